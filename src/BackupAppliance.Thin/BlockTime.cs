namespace BackupAppliance.Thin;

/// <summary>A mapping value: data block in the upper 40 bits, the pool time (24 bits) below.</summary>
public readonly record struct BlockTime(ulong DataBlock, uint Time)
{
    public static BlockTime Unpack(ulong raw) => new(raw >> 24, (uint)(raw & 0xFFFFFF));
    public ulong Pack() => (DataBlock << 24) | (Time & 0xFFFFFFUL);
}
