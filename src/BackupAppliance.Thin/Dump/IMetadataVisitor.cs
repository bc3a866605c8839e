namespace BackupAppliance.Thin.Dump;

/// <summary>Superblock fields as thin_dump prints them.</summary>
public readonly record struct SuperblockInfo(string Uuid, uint Time, ulong Transaction, uint Flags, uint Version,
    uint DataBlockSize, ulong NrDataBlocks, ulong? MetadataSnap);

/// <summary>A device as thin_dump prints it (values from the details tree).</summary>
public readonly record struct DeviceInfo(ulong DevId, ulong MappedBlocks, ulong Transaction, uint CreationTime, uint SnapTime);

/// <summary>
/// The one intermediate representation of thin metadata (as in thin-provisioning-tools): the dumper
/// produces these calls, emitters format them, the restorer consumes them.
/// </summary>
public interface IMetadataVisitor
{
    void BeginSuperblock(in SuperblockInfo sb);
    void EndSuperblock();
    void BeginDevice(in DeviceInfo dev);
    void EndDevice();
    /// <summary>A run of mappings with consecutive virtual and data blocks and one time; length 1 is a single mapping.</summary>
    void Mapping(ulong originBegin, ulong dataBegin, ulong length, uint time);
}
