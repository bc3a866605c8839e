using System.Buffers.Binary;

namespace BackupAppliance.PersistentData;

/// <summary>
/// The value type of a dm-array's btree (dm-array.c <c>block_inc</c>/<c>block_dec</c>): each value
/// is the u64 location of an array block, so the btree's references are metadata reference counts.
/// Copying a shared leaf adds a referrer to every array block it names; removing an entry or deleting
/// the tree drops one, which frees the block once nobody else holds it. Elements inside array blocks
/// carry no references (<see cref="ArrayTree"/> supports plain elements only), so dropping a block
/// never has to visit its contents.
/// </summary>
public sealed class ArrayBlockValue : IValueType
{
    private readonly TransactionManager _tm;

    public ArrayBlockValue(TransactionManager tm) => _tm = tm;

    public int Size => 8;

    public void Inc(ReadOnlySpan<byte> value) => _tm.Inc(BinaryPrimitives.ReadUInt64LittleEndian(value));

    public void Dec(ReadOnlySpan<byte> value) => _tm.Dec(BinaryPrimitives.ReadUInt64LittleEndian(value));

    public bool Equal(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => a[..8].SequenceEqual(b[..8]);
}
