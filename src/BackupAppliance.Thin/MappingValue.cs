using System.Buffers.Binary;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin;

/// <summary>Bottom-level mapping values: block_time; references count in the data space map.</summary>
internal sealed class MappingValue : IValueType
{
    private readonly SpaceMap _data;

    public MappingValue(SpaceMap data) => _data = data;

    public int Size => 8;
    public void Inc(ReadOnlySpan<byte> value) => _data.Inc(DataBlock(value));
    public void Dec(ReadOnlySpan<byte> value) => _data.Dec(DataBlock(value));
    public bool Equal(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => DataBlock(a) == DataBlock(b);

    private static ulong DataBlock(ReadOnlySpan<byte> v) => BinaryPrimitives.ReadUInt64LittleEndian(v) >> 24;
}

/// <summary>Top-level mapping values: the root of a device's mapping tree (a metadata reference).</summary>
internal sealed class SubtreeValue : IValueType
{
    private readonly TransactionManager _tm;
    private readonly Func<BTree> _subtrees;

    public SubtreeValue(TransactionManager tm, Func<BTree> subtrees)
    {
        _tm = tm;
        _subtrees = subtrees;
    }

    public int Size => 8;
    public void Inc(ReadOnlySpan<byte> value) => _tm.Inc(BinaryPrimitives.ReadUInt64LittleEndian(value));
    public void Dec(ReadOnlySpan<byte> value) => _subtrees().Delete(BinaryPrimitives.ReadUInt64LittleEndian(value));
    public bool Equal(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => a.SequenceEqual(b);
}
