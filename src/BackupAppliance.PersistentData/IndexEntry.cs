using System.Buffers.Binary;

namespace BackupAppliance.PersistentData;

/// <summary>disk_index_entry: where a bitmap lives, how many entries are free, and a search hint.</summary>
public record struct IndexEntry(ulong BlockNr, uint NrFree, uint NoneFreeBefore)
{
    public const int Size = 16;

    public static IndexEntry Read(ReadOnlySpan<byte> s) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(s),
        BinaryPrimitives.ReadUInt32LittleEndian(s[8..]),
        BinaryPrimitives.ReadUInt32LittleEndian(s[12..]));

    public readonly void Write(Span<byte> s)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(s, BlockNr);
        BinaryPrimitives.WriteUInt32LittleEndian(s[8..], NrFree);
        BinaryPrimitives.WriteUInt32LittleEndian(s[12..], NoneFreeBefore);
    }
}
