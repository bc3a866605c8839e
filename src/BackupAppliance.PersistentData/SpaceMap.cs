using System.Buffers.Binary;
using BackupAppliance.Core;

namespace BackupAppliance.PersistentData;

/// <summary>
/// Reference counts per block in the kernel's format (dm-space-map-common): 2-bit entries in bitmap
/// blocks, counts ≥ 3 in an overflow btree of u32. During a transaction changed counts live in memory
/// on top of the committed on-disk state; <see cref="Commit"/> writes them into shadowed bitmaps and
/// the overflow tree. A block is allocatable only if it is free both in the committed state and now,
/// so nothing the last committed superblock can reach is reused before the next commit.
/// </summary>
public abstract class SpaceMap
{
    public const int EntriesPerBitmap = SpaceMapBitmap.EntriesPerBlock;

    protected readonly TransactionManager Tm;
    private readonly BTree _refTree;
    private readonly Dictionary<ulong, uint> _counts = new();
    private readonly HashSet<ulong> _pending = new();
    private readonly HashSet<int> _dirtyBitmaps = new();
    private readonly byte[] _zeroBitmap = new byte[BlockChecksum.BlockSize];
    private IndexEntry[] _committed;
    private IndexEntry[] _current;
    private int[] _committedFree;
    private int[] _currentFree;
    private ulong _committedRefRoot;
    private ulong _nrAllocated;
    private ulong _cursor;

    protected SpaceMap(TransactionManager tm, string name, ulong nrBlocks)
    {
        Tm = tm;
        Name = name;
        NrBlocks = nrBlocks;
        _refTree = new BTree(tm, new PlainValue(4));
        int n = NrBitmaps(nrBlocks);
        _committed = new IndexEntry[n];
        _current = new IndexEntry[n];
        _committedFree = new int[n];
        _currentFree = new int[n];
        for (int i = 0; i < n; i++)
            _committedFree[i] = _currentFree[i] = EntriesIn(i);
    }

    public string Name { get; }
    public ulong NrBlocks { get; private set; }
    public ulong NrAllocated => _nrAllocated;
    public ulong NrFree => NrBlocks - _nrAllocated;
    protected ulong RefRoot;

    public static int NrBitmaps(ulong nrBlocks) => (int)((nrBlocks + EntriesPerBitmap - 1) / EntriesPerBitmap);

    protected int BitmapCount => _current.Length;
    protected IndexEntry CurrentEntry(int i) => _current[i];

    private int EntriesIn(int bitmap) =>
        (int)Math.Min(EntriesPerBitmap, NrBlocks - (ulong)bitmap * EntriesPerBitmap);

    /// <summary>Loads the committed state: index entries, overflow root; counts free entries exactly.</summary>
    protected void LoadCommitted(IndexEntry[] entries, ulong refRoot)
    {
        if (entries.Length != _current.Length)
            throw new CorruptMetadataException(0, $"{Name} space map has {entries.Length} bitmaps, expected {_current.Length} for {NrBlocks} blocks");
        _committed = (IndexEntry[])entries.Clone();
        _current = (IndexEntry[])entries.Clone();
        _committedRefRoot = RefRoot = refRoot;
        ulong free = 0;
        for (int i = 0; i < entries.Length; i++)
        {
            if (entries[i].BlockNr == 0)
                throw new CorruptMetadataException(0, $"{Name} space map index entry {i} has no bitmap");
            var bm = Tm.Read(entries[i].BlockNr, BlockKind.Bitmap);
            _committedFree[i] = _currentFree[i] = SpaceMapBitmap.CountFree(bm.Data, EntriesIn(i));
            free += (ulong)_committedFree[i];
        }
        // Counted, not taken from the root: thin_restore writes nr_allocated one too high.
        _nrAllocated = NrBlocks - free;
    }

    public uint Count(ulong b) => _counts.TryGetValue(b, out uint c) ? c : CommittedCount(b);

    public uint CommittedCount(ulong b)
    {
        if (b >= NrBlocks)
            throw new CorruptMetadataException(b, $"block is beyond the end of the {Name} space map ({NrBlocks} blocks)");
        int i = (int)(b / EntriesPerBitmap);
        var e = _committed[i];
        if (e.BlockNr == 0)
            return 0;
        uint c = SpaceMapBitmap.Get(Tm.Read(e.BlockNr, BlockKind.Bitmap).Data, (int)(b % EntriesPerBitmap));
        if (c < 3)
            return c;
        Span<byte> v = stackalloc byte[4];
        if (!_refTree.Lookup(_committedRefRoot, b, v))
            throw new CorruptMetadataException(e.BlockNr, $"{Name} space map: block {b} has count 3+ but no entry in the reference count tree");
        return BinaryPrimitives.ReadUInt32LittleEndian(v);
    }

    public void Inc(ulong b) => SetCount(b, Count(b) + 1);

    public void Dec(ulong b)
    {
        uint c = Count(b);
        if (c == 0)
            throw new CorruptMetadataException(b, $"{Name} space map: reference count of block {b} would go below zero");
        SetCount(b, c - 1);
    }

    public void SetCount(ulong b, uint count)
    {
        uint old = Count(b);
        int i = (int)(b / EntriesPerBitmap);
        if (old == 0 && count != 0)
        {
            _nrAllocated++;
            _currentFree[i]--;
        }
        else if (old != 0 && count == 0)
        {
            _nrAllocated--;
            _currentFree[i]++;
        }
        _counts[b] = count;
        _pending.Add(b);
    }

    /// <summary>Allocates a block free in both the committed and the current state (count becomes 1).</summary>
    public ulong Allocate()
    {
        if (TryFindFree(_cursor, NrBlocks, out ulong b) || TryFindFree(0, Math.Min(_cursor, NrBlocks), out b))
        {
            SetCount(b, 1);
            _cursor = b + 1;
            return b;
        }
        throw new SpaceExhaustedException(Name, NrBlocks);
    }

    private bool TryFindFree(ulong from, ulong end, out ulong found)
    {
        ulong b = from;
        while (b < end)
        {
            int i = (int)(b / EntriesPerBitmap);
            ulong first = (ulong)i * EntriesPerBitmap;
            if (_currentFree[i] > 0 && _committedFree[i] > 0)
            {
                var e = _committed[i];
                byte[] bits = e.BlockNr == 0 ? _zeroBitmap : Tm.Read(e.BlockNr, BlockKind.Bitmap).Data;
                int stop = (int)Math.Min((ulong)EntriesIn(i), end - first);
                int entry = (int)(b - first);
                while ((entry = SpaceMapBitmap.FindFree(bits, entry, stop)) >= 0)
                {
                    ulong cand = first + (ulong)entry;
                    if (!_counts.TryGetValue(cand, out uint c) || c == 0)
                    {
                        found = cand;
                        return true;
                    }
                    entry++;
                }
            }
            b = first + EntriesPerBitmap;
        }
        found = 0;
        return false;
    }

    /// <summary>Writes all changed counts into (shadowed) bitmaps and the overflow tree.</summary>
    protected void ApplyPending()
    {
        for (int i = 0; i < _current.Length; i++)
            if (_current[i].BlockNr == 0)
                WritableBitmap(i);
        while (_pending.Count > 0)
        {
            var batch = new ulong[_pending.Count];
            _pending.CopyTo(batch);
            _pending.Clear();
            Array.Sort(batch);
            foreach (ulong b in batch)
                WriteCount(b, _counts[b]);
        }
    }

    protected bool HasPending => _pending.Count > 0;

    private void WriteCount(ulong b, uint count)
    {
        int i = (int)(b / EntriesPerBitmap);
        int entry = (int)(b % EntriesPerBitmap);
        var bm = WritableBitmap(i);
        uint old = SpaceMapBitmap.Get(bm.Data, entry);
        if (count >= 3)
        {
            SpaceMapBitmap.Set(bm.Data, entry, 3);
            Span<byte> v = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(v, count);
            _refTree.Insert(ref RefRoot, b, v);
        }
        else
        {
            SpaceMapBitmap.Set(bm.Data, entry, count);
            if (old == 3)
                _refTree.Remove(ref RefRoot, b);
        }
    }

    private MetadataBlock WritableBitmap(int i)
    {
        MetadataBlock bm;
        if (_current[i].BlockNr == 0)
            bm = Tm.New(BlockKind.Bitmap);
        else
            bm = Tm.Shadow(_current[i].BlockNr, BlockKind.Bitmap, out _);
        _current[i].BlockNr = bm.Location;
        _dirtyBitmaps.Add(i);
        return bm;
    }

    /// <summary>Index entries as they will be committed, with exact nr_free and none_free_before.</summary>
    protected IndexEntry[] FinalIndex()
    {
        foreach (int i in _dirtyBitmaps)
        {
            var bm = Tm.Read(_current[i].BlockNr, BlockKind.Bitmap);
            int firstFree = SpaceMapBitmap.FindFree(bm.Data, 0, EntriesIn(i));
            _current[i].NrFree = (uint)_currentFree[i];
            _current[i].NoneFreeBefore = (uint)(firstFree < 0 ? EntriesIn(i) : firstFree);
        }
        return _current;
    }

    protected IEnumerable<int> DirtyBitmaps => _dirtyBitmaps;

    /// <summary>Writes this space map's state into metadata blocks; returns its root for the superblock.</summary>
    public abstract SpaceMapRoot Commit();

    /// <summary>The superblock naming the new state is durable: it becomes the committed state.</summary>
    public void OnCommitted()
    {
        _committed = (IndexEntry[])_current.Clone();
        Array.Copy(_currentFree, _committedFree, _currentFree.Length);
        _committedRefRoot = RefRoot;
        _counts.Clear();
        _pending.Clear();
        _dirtyBitmaps.Clear();
    }

    public bool IsDirty => _counts.Count > 0 || _pending.Count > 0;

    /// <summary>The most blocks the on-disk index can describe (the metadata index block has 255 entries).</summary>
    protected virtual ulong MaxNrBlocks => ulong.MaxValue;

    /// <summary>Grows the map (pool or metadata resize); new blocks are free.</summary>
    public void Extend(ulong newNrBlocks)
    {
        if (newNrBlocks < NrBlocks)
            throw new InvalidOperationException($"{Name} space map cannot shrink from {NrBlocks} to {newNrBlocks} blocks");
        if (newNrBlocks > MaxNrBlocks)
            throw new InvalidOperationException($"{Name} space map cannot grow to {newNrBlocks} blocks (at most {MaxNrBlocks})");
        int oldN = _current.Length, newN = NrBitmaps(newNrBlocks);
        int lastOld = oldN - 1;
        int lastOldEntriesBefore = oldN == 0 ? 0 : EntriesIn(lastOld);
        NrBlocks = newNrBlocks;
        Array.Resize(ref _committed, newN);
        Array.Resize(ref _current, newN);
        Array.Resize(ref _committedFree, newN);
        Array.Resize(ref _currentFree, newN);
        if (oldN > 0)
        {
            int grown = EntriesIn(lastOld) - lastOldEntriesBefore;
            _committedFree[lastOld] += grown;
            _currentFree[lastOld] += grown;
            if (grown > 0 && _current[lastOld].BlockNr != 0)
                WritableBitmap(lastOld);
        }
        for (int i = oldN; i < newN; i++)
            _committedFree[i] = _currentFree[i] = EntriesIn(i);
    }
}
