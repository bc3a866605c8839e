namespace BackupAppliance.PersistentData;

/// <summary>A cached 4 KiB metadata block: its location, kind and bytes.</summary>
public sealed class MetadataBlock
{
    internal MetadataBlock(ulong location, BlockKind kind, byte[] data)
    {
        Location = location;
        Kind = kind;
        Data = data;
    }

    public ulong Location { get; }
    public BlockKind Kind { get; internal set; }
    public byte[] Data { get; }
    public Span<byte> Span => Data;
    internal bool Dirty { get; set; }
    internal long LastUse { get; set; }
}
