using System.Buffers.Binary;

namespace BackupAppliance.PersistentData;

/// <summary>
/// View of a persistent-data btree node (dm-btree-internal.h): 32-byte header
/// {csum, flags, blocknr, nr_entries, max_entries, value_size, padding}, then
/// keys[max_entries] (u64), then values[max_entries] of value_size bytes each.
/// </summary>
public readonly struct BTreeNode
{
    public const uint InternalFlag = 1;
    public const uint LeafFlag = 2;
    public const int HeaderSize = 32;

    private readonly byte[] _data;

    public BTreeNode(byte[] data) => _data = data;

    public byte[] Data => _data;
    public uint Flags { get => Get32(4); set => Set32(4, value); }
    public bool IsLeaf => (Flags & LeafFlag) != 0;
    public bool IsInternal => (Flags & InternalFlag) != 0;
    public int NrEntries { get => (int)Get32(16); set => Set32(16, (uint)value); }
    public int MaxEntries { get => (int)Get32(20); set => Set32(20, (uint)value); }
    public int ValueSize { get => (int)Get32(24); set => Set32(24, (uint)value); }

    /// <summary>
    /// The structural checks a reader needs before trusting a node's counts (the kernel's
    /// node_check): a known flag, max_entries that fit the block, nr_entries ≤ max_entries.
    /// </summary>
    public void Validate(ulong location)
    {
        if (!IsLeaf && !IsInternal)
            throw new BackupAppliance.Core.CorruptMetadataException(location, $"btree node has neither the leaf nor the internal flag (flags {Flags})");
        long need = HeaderSize + (long)MaxEntries * (8 + ValueSize);
        if (ValueSize <= 0 || MaxEntries <= 0 || need > BlockChecksum.BlockSize)
            throw new BackupAppliance.Core.CorruptMetadataException(location, $"btree node max_entries {MaxEntries} with value_size {ValueSize} does not fit a block");
        if (NrEntries > MaxEntries)
            throw new BackupAppliance.Core.CorruptMetadataException(location, $"btree node has nr_entries {NrEntries} > max_entries {MaxEntries}");
        if (IsInternal && ValueSize != 8)
            throw new BackupAppliance.Core.CorruptMetadataException(location, $"internal btree node has value_size {ValueSize}, expected 8");
    }

    /// <summary>calc_max_entries: entries that fit, rounded down to a multiple of 3.</summary>
    public static int CalcMaxEntries(int valueSize)
    {
        int n = (BlockChecksum.BlockSize - HeaderSize) / (8 + valueSize);
        return 3 * (n / 3);
    }

    public void Init(bool leaf, int valueSize)
    {
        Array.Clear(_data, 4, _data.Length - 4);
        Flags = leaf ? LeafFlag : InternalFlag;
        ValueSize = valueSize;
        MaxEntries = CalcMaxEntries(valueSize);
        NrEntries = 0;
    }

    public ulong Key(int i) => BinaryPrimitives.ReadUInt64LittleEndian(_data.AsSpan(HeaderSize + 8 * i));
    public void SetKey(int i, ulong key) => BinaryPrimitives.WriteUInt64LittleEndian(_data.AsSpan(HeaderSize + 8 * i), key);

    private int ValueOffset(int i) => HeaderSize + 8 * MaxEntries + ValueSize * i;
    public Span<byte> Value(int i) => _data.AsSpan(ValueOffset(i), ValueSize);
    public ulong Value64(int i) => BinaryPrimitives.ReadUInt64LittleEndian(_data.AsSpan(ValueOffset(i)));
    public void SetValue64(int i, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(_data.AsSpan(ValueOffset(i)), v);

    public ReadOnlySpan<byte> KeyBytes => _data.AsSpan(HeaderSize, 8 * NrEntries);
    public ReadOnlySpan<byte> ValueBytes => _data.AsSpan(ValueOffset(0), ValueSize * NrEntries);

    /// <summary>Index of the largest key ≤ <paramref name="key"/>, or -1.</summary>
    public int LowerBound(ulong key)
    {
        int lo = -1, hi = NrEntries;
        while (hi - lo > 1)
        {
            int mid = (lo + hi) >> 1;
            if (Key(mid) <= key) lo = mid; else hi = mid;
        }
        return lo;
    }

    /// <summary>Opens a gap at <paramref name="index"/> and stores the entry there.</summary>
    public void InsertAt(int index, ulong key, ReadOnlySpan<byte> value)
    {
        int nr = NrEntries, vs = ValueSize;
        var keys = _data.AsSpan(HeaderSize);
        keys.Slice(8 * index, 8 * (nr - index)).CopyTo(keys[(8 * (index + 1))..]);
        int vo = ValueOffset(0);
        var vals = _data.AsSpan(vo);
        vals.Slice(vs * index, vs * (nr - index)).CopyTo(vals[(vs * (index + 1))..]);
        SetKey(index, key);
        value.CopyTo(Value(index));
        NrEntries = nr + 1;
    }

    public void DeleteAt(int index)
    {
        int nr = NrEntries, vs = ValueSize;
        var keys = _data.AsSpan(HeaderSize);
        keys.Slice(8 * (index + 1), 8 * (nr - index - 1)).CopyTo(keys[(8 * index)..]);
        var vals = _data.AsSpan(ValueOffset(0));
        vals.Slice(vs * (index + 1), vs * (nr - index - 1)).CopyTo(vals[(vs * index)..]);
        NrEntries = nr - 1;
        keys.Slice(8 * (nr - 1), 8).Clear();
        vals.Slice(vs * (nr - 1), vs).Clear();
    }

    /// <summary>Copies <paramref name="count"/> entries from <paramref name="src"/>[srcIndex] to this[dstIndex].</summary>
    public void CopyEntries(int dstIndex, BTreeNode src, int srcIndex, int count)
    {
        int vs = ValueSize;
        src._data.AsSpan(HeaderSize + 8 * srcIndex, 8 * count).CopyTo(_data.AsSpan(HeaderSize + 8 * dstIndex));
        src._data.AsSpan(src.ValueOffset(srcIndex), vs * count).CopyTo(_data.AsSpan(ValueOffset(dstIndex)));
    }

    /// <summary>Moves this node's entries right by <paramref name="count"/> (positive) or left (negative).</summary>
    public void ShiftEntries(int count)
    {
        int nr = NrEntries, vs = ValueSize;
        var keys = _data.AsSpan(HeaderSize);
        var vals = _data.AsSpan(ValueOffset(0));
        if (count > 0)
        {
            keys[..(8 * nr)].CopyTo(keys[(8 * count)..]);
            vals[..(vs * nr)].CopyTo(vals[(vs * count)..]);
            keys[..(8 * count)].Clear();
            vals[..(vs * count)].Clear();
        }
        else if (count < 0)
        {
            int c = -count;
            keys.Slice(8 * c, 8 * (nr - c)).CopyTo(keys);
            vals.Slice(vs * c, vs * (nr - c)).CopyTo(vals);
            keys.Slice(8 * (nr - c), 8 * c).Clear();
            vals.Slice(vs * (nr - c), vs * c).Clear();
        }
    }

    /// <summary>Zeroes entry slots past nr_entries so nodes are deterministic on disk.</summary>
    public void ClearTail()
    {
        int nr = NrEntries, max = MaxEntries, vs = ValueSize;
        _data.AsSpan(HeaderSize + 8 * nr, 8 * (max - nr)).Clear();
        _data.AsSpan(ValueOffset(nr), vs * (max - nr)).Clear();
    }

    private uint Get32(int off) => BinaryPrimitives.ReadUInt32LittleEndian(_data.AsSpan(off));
    private void Set32(int off, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(_data.AsSpan(off), v);
}
