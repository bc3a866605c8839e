using BackupAppliance.Core;

namespace BackupAppliance.PersistentData;

/// <summary>
/// The disk space map (dm-space-map-disk) that counts data blocks. Its bitmap index is a btree keyed
/// by bitmap number with 16-byte <see cref="IndexEntry"/> values; its blocks are metadata blocks, so
/// it commits before the metadata space map.
/// </summary>
public sealed class DiskSpaceMap : SpaceMap
{
    private readonly BTree _indexTree;
    private ulong _indexRoot;

    private DiskSpaceMap(TransactionManager tm, ulong nrBlocks)
        : base(tm, "data", nrBlocks)
    {
        _indexTree = new BTree(tm, new PlainValue(IndexEntry.Size));
    }

    public static DiskSpaceMap Create(TransactionManager tm, ulong nrBlocks)
    {
        var sm = new DiskSpaceMap(tm, nrBlocks);
        sm._indexRoot = sm._indexTree.CreateEmpty();
        sm.RefRoot = new BTree(tm, new PlainValue(4)).CreateEmpty();
        return sm;
    }

    public static DiskSpaceMap Open(TransactionManager tm, SpaceMapRoot root)
    {
        var sm = new DiskSpaceMap(tm, root.NrBlocks);
        var entries = new IndexEntry[NrBitmaps(root.NrBlocks)];
        int seen = 0;
        sm._indexTree.VisitLeaves(root.BitmapRoot, n =>
        {
            for (int i = 0; i < n.NrEntries; i++)
            {
                ulong k = n.Key(i);
                if (k >= (ulong)entries.Length)
                    throw new CorruptMetadataException(root.BitmapRoot, $"data space map index has an entry for bitmap {k}, only {entries.Length} expected");
                entries[k] = IndexEntry.Read(n.Value(i));
                seen++;
            }
        });
        if (seen != entries.Length)
            throw new CorruptMetadataException(root.BitmapRoot, $"data space map index has {seen} entries, expected {entries.Length}");
        sm._indexRoot = root.BitmapRoot;
        sm.LoadCommitted(entries, root.RefCountRoot);
        return sm;
    }

    public override SpaceMapRoot Commit()
    {
        ApplyPending();
        var entries = FinalIndex();
        Span<byte> v = stackalloc byte[IndexEntry.Size];
        var dirty = DirtyBitmaps.ToArray();
        Array.Sort(dirty);
        foreach (int i in dirty)
        {
            entries[i].Write(v);
            _indexTree.Insert(ref _indexRoot, (ulong)i, v);
        }
        return new SpaceMapRoot(NrBlocks, NrAllocated, _indexRoot, RefRoot);
    }
}
