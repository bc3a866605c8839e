namespace BackupAppliance.Thin.Check;

/// <summary>
/// What a btree is for. The role fixes the leaf value size, and a node may only be shared between
/// trees of the same role (a details node reached from a mapping tree is damage, not sharing).
/// </summary>
public enum TreeRole
{
    /// <summary>Device id → disk_device_details (24 bytes).</summary>
    DeviceDetails,

    /// <summary>Top level of the mapping tree: device id → root of that device's mapping tree.</summary>
    MappingTop,

    /// <summary>A device's mapping tree: virtual block → block_time.</summary>
    MappingBottom,

    /// <summary>Data space map bitmap index: bitmap number → disk_index_entry (16 bytes).</summary>
    DataSpaceMapIndex,

    /// <summary>Metadata space map overflow tree: block → u32 count.</summary>
    MetadataRefCounts,

    /// <summary>Data space map overflow tree: block → u32 count.</summary>
    DataRefCounts,
}

public static class TreeRoles
{
    public static int LeafValueSize(this TreeRole role) => role switch
    {
        TreeRole.DeviceDetails => DeviceDetails.Size,
        TreeRole.MappingTop or TreeRole.MappingBottom => 8,
        TreeRole.DataSpaceMapIndex => 16,
        TreeRole.MetadataRefCounts or TreeRole.DataRefCounts => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(role)),
    };

    public static string Describe(this TreeRole role) => role switch
    {
        TreeRole.DeviceDetails => "device details tree",
        TreeRole.MappingTop => "top level of the mapping tree",
        TreeRole.MappingBottom => "device mapping tree",
        TreeRole.DataSpaceMapIndex => "data space map index",
        TreeRole.MetadataRefCounts => "metadata space map ref count tree",
        TreeRole.DataRefCounts => "data space map ref count tree",
        _ => role.ToString(),
    };
}
