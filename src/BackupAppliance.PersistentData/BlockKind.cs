namespace BackupAppliance.PersistentData;

/// <summary>
/// What a metadata block holds. Each kind has its own checksum salt (dm persistent-data
/// validators), so a checksum also says what the block is, and its own self-location offset.
/// </summary>
public enum BlockKind
{
    ThinSuperblock,
    BTreeNode,
    Bitmap,
    MetadataIndex,
    ArrayBlock,
    EraSuperblock,
    CloneSuperblock,
}

public static class BlockKinds
{
    public static uint Salt(BlockKind kind) => kind switch
    {
        BlockKind.ThinSuperblock => 160774,
        BlockKind.BTreeNode => 121107,
        BlockKind.Bitmap => 240779,
        BlockKind.MetadataIndex => 160478,
        BlockKind.ArrayBlock => 595846735,
        BlockKind.EraSuperblock => 146538381,
        BlockKind.CloneSuperblock => 257649492,
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Byte offset of the u64 <c>blocknr</c> field (array blocks keep it after their counts).</summary>
    public static int BlockNrOffset(BlockKind kind) => kind == BlockKind.ArrayBlock ? 16 : 8;

    public static string Describe(BlockKind kind) => kind switch
    {
        BlockKind.ThinSuperblock => "thin superblock",
        BlockKind.BTreeNode => "btree node",
        BlockKind.Bitmap => "space map bitmap",
        BlockKind.MetadataIndex => "metadata space map index",
        BlockKind.ArrayBlock => "array block",
        BlockKind.EraSuperblock => "era superblock",
        BlockKind.CloneSuperblock => "clone superblock",
        _ => kind.ToString(),
    };
}
