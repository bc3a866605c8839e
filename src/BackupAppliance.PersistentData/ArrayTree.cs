using System.Buffers.Binary;
using BackupAppliance.Core;

namespace BackupAppliance.PersistentData;

/// <summary>
/// dm-array (dm-array.c): an array of fixed-size values kept in array blocks, found through a fully
/// populated btree from array-block index (0, 1, 2, …) to block location. Array block header
/// (24 bytes): {csum, max_entries = (4096-24)/value_size, nr_entries, value_size, blocknr}, then the
/// values packed. Every block is full except the last, so element i is slot i % max_entries of block
/// i / max_entries, and the length follows from the last block. Roots are passed by reference and
/// change on every write, as with <see cref="BTree"/>.
/// Only plain elements are supported (era's u32 eras, bitset u64 words): copying a shared array
/// block therefore never has to take references on its elements.
/// </summary>
public sealed class ArrayTree
{
    public const int HeaderSize = 24;
    private const int MaxEntriesOffset = 4;
    private const int NrEntriesOffset = 8;
    private const int ValueSizeOffset = 12;

    private readonly TransactionManager _tm;
    private readonly BTree _tree;

    public ArrayTree(TransactionManager tm, int valueSize)
    {
        if (valueSize < 1 || valueSize > BlockChecksum.BlockSize - HeaderSize)
            throw new ArgumentOutOfRangeException(nameof(valueSize), valueSize, "array values must be 1..4072 bytes");
        _tm = tm;
        ValueSize = valueSize;
        EntriesPerBlock = CalcMaxEntries(valueSize);
        _tree = new BTree(tm, new ArrayBlockValue(tm));
    }

    public int ValueSize { get; }

    /// <summary>max_entries of every array block: 1018 for u32, 509 for u64.</summary>
    public int EntriesPerBlock { get; }

    public static int CalcMaxEntries(int valueSize) => (BlockChecksum.BlockSize - HeaderSize) / valueSize;

    /// <summary>A new array of length 0 (an empty btree).</summary>
    public ulong CreateEmpty() => _tree.CreateEmpty();

    /// <summary>A new array of <paramref name="length"/> copies of <paramref name="fill"/>.</summary>
    public ulong Create(ulong length, ReadOnlySpan<byte> fill)
    {
        ulong root = CreateEmpty();
        Resize(ref root, length, fill);
        return root;
    }

    /// <summary>Number of elements: the last block's index times max_entries plus its nr_entries.</summary>
    public ulong Length(ulong root)
    {
        ulong loc = root;
        var n = ReadIndexNode(loc);
        while (n.IsInternal)
        {
            if (n.NrEntries == 0)
                throw new CorruptMetadataException(loc, "array btree: internal node has no entries");
            loc = n.Value64(n.NrEntries - 1);
            n = ReadIndexNode(loc);
        }
        if (n.NrEntries == 0)
            return 0;
        ulong lastBlock = n.Key(n.NrEntries - 1);
        var data = ReadBlock(n.Value64(n.NrEntries - 1));
        return lastBlock * (ulong)EntriesPerBlock + (ulong)NrEntries(data);
    }

    public void Get(ulong root, ulong index, Span<byte> value)
    {
        if (value.Length < ValueSize)
            throw new ArgumentException($"value buffer holds {value.Length} bytes, need {ValueSize}", nameof(value));
        ulong loc = LocateBlock(root, index, out int slot);
        var data = ReadBlock(loc);
        if (slot >= NrEntries(data))
            throw OutOfRange(index);
        data.AsSpan(Offset(slot), ValueSize).CopyTo(value);
    }

    public void Set(ref ulong root, ulong index, ReadOnlySpan<byte> value)
    {
        CheckValue(value);
        ulong loc = LocateBlock(root, index, out int slot);
        if (slot >= NrEntries(ReadBlock(loc)))
            throw OutOfRange(index);
        var block = ShadowBlock(ref root, index / (ulong)EntriesPerBlock, loc);
        value.CopyTo(block.Data.AsSpan(Offset(slot)));
    }

    /// <summary>
    /// dm_array_resize: the tail block grows or shrinks, whole blocks are added or dropped; new slots
    /// hold <paramref name="fill"/>. Like the kernel, all whole blocks added by one resize are the
    /// same shared block (one reference per position); a later write copies the one it changes.
    /// </summary>
    public void Resize(ref ulong root, ulong newLength, ReadOnlySpan<byte> fill)
    {
        CheckValue(fill);
        ulong old = Length(root);
        if (newLength > old)
            Grow(ref root, old, newLength, fill);
        else if (newLength < old)
            Shrink(ref root, old, newLength);
    }

    /// <summary>Calls <paramref name="visit"/> with every element index and value, in order.</summary>
    public void Walk(ulong root, Action<ulong, ReadOnlySpan<byte>> visit)
    {
        int vs = ValueSize;
        VisitBlocks(root, (first, values) =>
        {
            int nr = values.Length / vs;
            for (int i = 0; i < nr; i++)
                visit(first + (ulong)i, values.Slice(i * vs, vs));
        });
    }

    /// <summary>
    /// Calls <paramref name="visit"/> once per array block, in order, with the index of its first
    /// element and its packed values (nr_entries × value_size bytes). Checks that the btree is fully
    /// populated and that only the last block is partial.
    /// </summary>
    public void VisitBlocks(ulong root, Action<ulong, ReadOnlySpan<byte>> visit)
    {
        ulong expected = 0;
        ulong partial = ulong.MaxValue; // location of a block seen with nr_entries < max_entries
        _tree.VisitLeaves(root, leaf =>
        {
            for (int i = 0; i < leaf.NrEntries; i++)
            {
                ulong loc = leaf.Value64(i);
                if (partial != ulong.MaxValue)
                    throw new CorruptMetadataException(partial, $"array block {expected - 1} is not full but is not the last block");
                if (leaf.Key(i) != expected)
                    throw new CorruptMetadataException(loc, $"array btree maps index {leaf.Key(i)} where {expected} was expected");
                var data = ReadBlock(loc);
                int nr = NrEntries(data);
                if (nr == 0)
                    throw new CorruptMetadataException(loc, "array block holds no entries");
                if (nr < EntriesPerBlock)
                    partial = loc;
                visit(expected * (ulong)EntriesPerBlock, data.AsSpan(HeaderSize, nr * ValueSize));
                expected++;
            }
        });
    }

    /// <summary>
    /// Calls <paramref name="visit"/> for array blocks [<paramref name="fromBlock"/>, <paramref name="toBlock"/>)
    /// in order with the block's index, its location and its packed values, reading only the btree paths
    /// to them. Blocks shared by several positions (a resize's fill block) come with the same location,
    /// so a caller can skip a block it has already judged. Returning false stops the walk.
    /// </summary>
    public void VisitBlockRange(ulong root, ulong fromBlock, ulong toBlock, ArrayBlockVisitor visit)
    {
        _tree.VisitRange(root, fromBlock, toBlock, (k, v) =>
        {
            ulong loc = BinaryPrimitives.ReadUInt64LittleEndian(v);
            var data = ReadBlock(loc);
            return visit(k, loc, data.AsSpan(HeaderSize, NrEntries(data) * ValueSize));
        });
    }

    /// <summary>
    /// The values of array block <paramref name="blockIndex"/> (nr_entries × value_size bytes), made
    /// writable first (the btree path and the block are shadowed, so a shared block is copied). For
    /// many changes in one block at the cost of one shadowing; valid until the next change to this array.
    /// </summary>
    public Memory<byte> WritableBlock(ref ulong root, ulong blockIndex)
    {
        ulong loc = LocateBlock(root, blockIndex * (ulong)EntriesPerBlock, out _);
        var block = ShadowBlock(ref root, blockIndex, loc);
        return block.Data.AsMemory(HeaderSize, NrEntries(block.Data) * ValueSize);
    }

    /// <summary>dm_array_del: drops this array's reference; blocks nobody else holds are freed.</summary>
    public void Delete(ulong root) => _tree.Delete(root);

    private void Grow(ref ulong root, ulong old, ulong length, ReadOnlySpan<byte> fill)
    {
        ulong max = (ulong)EntriesPerBlock;
        ulong oldBlocks = BlocksFor(old), newBlocks = BlocksFor(length);
        if (old % max != 0)
        {
            // The partial tail fills up to the new length or to a whole block.
            ulong tailIndex = oldBlocks - 1;
            int from = (int)(old % max);
            int to = newBlocks == oldBlocks ? (int)(length - tailIndex * max) : EntriesPerBlock;
            var tail = ShadowBlock(ref root, tailIndex, LocateBlock(root, tailIndex * max, out _));
            FillSlots(tail.Data, from, to, fill);
            SetNrEntries(tail.Data, to);
        }
        ulong fullEnd = length / max;
        if (fullEnd > oldBlocks)
        {
            var full = NewBlock(EntriesPerBlock, fill);
            for (ulong k = oldBlocks; k < fullEnd; k++)
            {
                if (k != oldBlocks)
                    _tm.Inc(full.Location);
                InsertBlock(ref root, k, full.Location);
            }
        }
        if (length % max != 0 && newBlocks > oldBlocks)
        {
            var tail = NewBlock((int)(length % max), fill);
            InsertBlock(ref root, newBlocks - 1, tail.Location);
        }
    }

    private void Shrink(ref ulong root, ulong old, ulong length)
    {
        ulong max = (ulong)EntriesPerBlock;
        ulong oldBlocks = BlocksFor(old), newBlocks = BlocksFor(length);
        // Drop whole blocks from the end, as the kernel does; each remove drops one block reference.
        for (ulong k = oldBlocks; k > newBlocks; k--)
        {
            if (!_tree.Remove(ref root, k - 1))
                throw new CorruptMetadataException(root, $"array btree has no entry for block {k - 1}");
        }
        if (newBlocks == 0)
            return;
        ulong tailIndex = newBlocks - 1;
        int nrNow = newBlocks == oldBlocks ? (int)(old - tailIndex * max) : EntriesPerBlock;
        int nrNew = (int)(length - tailIndex * max);
        if (nrNew == nrNow)
            return;
        var tail = ShadowBlock(ref root, tailIndex, LocateBlock(root, tailIndex * max, out _));
        // Zero the dropped slots so a later grow (and the on-disk image) never sees stale values.
        tail.Data.AsSpan(Offset(nrNew)).Clear();
        SetNrEntries(tail.Data, nrNew);
    }

    /// <summary>
    /// A writable copy of array block <paramref name="blockIndex"/> (currently at <paramref name="location"/>).
    /// The btree path is shadowed first: if a node on it is shared, copying it hands the array block
    /// another reference, so the block's own count then says "shared" and the block is copied rather
    /// than changed under the other root. If the block moves, the btree entry is re-pointed without
    /// dropping a reference, because shadowing already moved it from the old block to the new one.
    /// </summary>
    private MetadataBlock ShadowBlock(ref ulong root, ulong blockIndex, ulong location)
    {
        Span<byte> v = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(v, location);
        _tree.Repoint(ref root, blockIndex, v);
        var block = _tm.Shadow(location, BlockKind.ArrayBlock, out _);
        if (block.Location != location)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(v, block.Location);
            _tree.Repoint(ref root, blockIndex, v);
        }
        return block;
    }

    private MetadataBlock NewBlock(int nrEntries, ReadOnlySpan<byte> fill)
    {
        var b = _tm.New(BlockKind.ArrayBlock);
        var d = b.Data.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(d[MaxEntriesOffset..], (uint)EntriesPerBlock);
        BinaryPrimitives.WriteUInt32LittleEndian(d[ValueSizeOffset..], (uint)ValueSize);
        SetNrEntries(b.Data, nrEntries);
        FillSlots(b.Data, 0, nrEntries, fill);
        return b;
    }

    private void InsertBlock(ref ulong root, ulong blockIndex, ulong location)
    {
        Span<byte> v = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(v, location);
        if (!_tree.Insert(ref root, blockIndex, v))
            throw new CorruptMetadataException(root, $"array btree already has an entry for block {blockIndex} beyond the array's end");
    }

    private ulong LocateBlock(ulong root, ulong index, out int slot)
    {
        ulong blockIndex = index / (ulong)EntriesPerBlock;
        slot = (int)(index % (ulong)EntriesPerBlock);
        Span<byte> v = stackalloc byte[8];
        if (!_tree.Lookup(root, blockIndex, v))
            throw OutOfRange(index);
        return BinaryPrimitives.ReadUInt64LittleEndian(v);
    }

    /// <summary>Reads an array block (checksum and blocknr verified) and checks its header against this array.</summary>
    private byte[] ReadBlock(ulong location)
    {
        var data = _tm.Read(location, BlockKind.ArrayBlock).Data;
        uint max = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(MaxEntriesOffset));
        uint vs = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(ValueSizeOffset));
        uint nr = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(NrEntriesOffset));
        if (vs != (uint)ValueSize)
            throw new CorruptMetadataException(location, $"array block has value_size {vs}, expected {ValueSize}");
        if (max != (uint)EntriesPerBlock)
            throw new CorruptMetadataException(location, $"array block has max_entries {max}, expected {EntriesPerBlock}");
        if (nr > max)
            throw new CorruptMetadataException(location, $"array block has nr_entries {nr} > max_entries {max}");
        return data;
    }

    private BTreeNode ReadIndexNode(ulong location)
    {
        var n = _tree.ReadNode(location);
        if (!n.IsLeaf && !n.IsInternal)
            throw new CorruptMetadataException(location, $"array btree node has flags {n.Flags}");
        if (n.ValueSize != 8 || n.NrEntries > n.MaxEntries)
            throw new CorruptMetadataException(location, $"array btree node has value_size {n.ValueSize}, nr_entries {n.NrEntries}, max_entries {n.MaxEntries}");
        return n;
    }

    private void FillSlots(byte[] data, int from, int to, ReadOnlySpan<byte> fill)
    {
        for (int i = from; i < to; i++)
            fill.CopyTo(data.AsSpan(Offset(i)));
    }

    private ulong BlocksFor(ulong length) => (length + (ulong)EntriesPerBlock - 1) / (ulong)EntriesPerBlock;

    private int Offset(int slot) => HeaderSize + slot * ValueSize;

    private static int NrEntries(byte[] data) => (int)BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(NrEntriesOffset));

    private static void SetNrEntries(byte[] data, int nr) => BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(NrEntriesOffset), (uint)nr);

    private void CheckValue(ReadOnlySpan<byte> value)
    {
        if (value.Length != ValueSize)
            throw new ArgumentException($"value has {value.Length} bytes, the array's values have {ValueSize}", nameof(value));
    }

    private static ArgumentOutOfRangeException OutOfRange(ulong index) =>
        new(nameof(index), index, "index is beyond the end of the array");
}

/// <summary>One array block in <see cref="ArrayTree.VisitBlockRange"/>: index, location, packed values; false stops.</summary>
public delegate bool ArrayBlockVisitor(ulong blockIndex, ulong location, ReadOnlySpan<byte> values);
