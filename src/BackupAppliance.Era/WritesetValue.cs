using System.Buffers.Binary;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Era;

/// <summary>
/// An archived writeset as the writeset tree stores it (writeset_disk): u32 nr_bits, u64 bitset root,
/// 12 bytes packed. The root is reference counted: copying a shared leaf takes a reference on each
/// bitset, removing or overwriting an entry deletes its bitset (what nobody else holds is freed).
/// Equality compares all 12 bytes (the 2021 "correct value size" fix).
/// </summary>
public readonly record struct Writeset(uint NrBits, ulong Root)
{
    public const int Size = 12;

    public static Writeset Read(ReadOnlySpan<byte> v) =>
        new(BinaryPrimitives.ReadUInt32LittleEndian(v), BinaryPrimitives.ReadUInt64LittleEndian(v[4..]));

    public void Write(Span<byte> v)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(v, NrBits);
        BinaryPrimitives.WriteUInt64LittleEndian(v[4..], Root);
    }
}

/// <summary>The writeset tree's value type: reference counting of the bitsets it names.</summary>
public sealed class WritesetValue : IValueType
{
    private readonly TransactionManager _tm;
    private readonly Bitset _bitset;

    public WritesetValue(TransactionManager tm, Bitset bitset)
    {
        _tm = tm;
        _bitset = bitset;
    }

    public int Size => Writeset.Size;

    public void Inc(ReadOnlySpan<byte> value) => _tm.Inc(Writeset.Read(value).Root);

    public void Dec(ReadOnlySpan<byte> value) => _bitset.Delete(Writeset.Read(value).Root);

    public bool Equal(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => a[..Size].SequenceEqual(b[..Size]);
}
