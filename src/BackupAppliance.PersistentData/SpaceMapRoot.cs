using System.Buffers.Binary;

namespace BackupAppliance.PersistentData;

/// <summary>disk_sm_root, the 32 meaningful bytes of a superblock's 128-byte space-map field.</summary>
public readonly record struct SpaceMapRoot(ulong NrBlocks, ulong NrAllocated, ulong BitmapRoot, ulong RefCountRoot)
{
    public const int FieldSize = 128;

    public static SpaceMapRoot Read(ReadOnlySpan<byte> s) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(s),
        BinaryPrimitives.ReadUInt64LittleEndian(s[8..]),
        BinaryPrimitives.ReadUInt64LittleEndian(s[16..]),
        BinaryPrimitives.ReadUInt64LittleEndian(s[24..]));

    public void Write(Span<byte> s)
    {
        s[..FieldSize].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(s, NrBlocks);
        BinaryPrimitives.WriteUInt64LittleEndian(s[8..], NrAllocated);
        BinaryPrimitives.WriteUInt64LittleEndian(s[16..], BitmapRoot);
        BinaryPrimitives.WriteUInt64LittleEndian(s[24..], RefCountRoot);
    }
}
