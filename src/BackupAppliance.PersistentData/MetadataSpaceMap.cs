using BackupAppliance.Core;

namespace BackupAppliance.PersistentData;

/// <summary>
/// The metadata space map (dm-space-map-metadata): counts every metadata block, including its own.
/// Its bitmap index is one index block of up to 255 entries, so it manages at most 4,161,600 blocks.
/// Committing allocates (shadowed bitmaps, overflow-tree nodes, the index block), which changes counts
/// again: it repeats until nothing is left to write.
/// </summary>
public sealed class MetadataSpaceMap : SpaceMap
{
    public const int MaxIndexEntries = 255;
    public const ulong MaxBlocks = (ulong)MaxIndexEntries * EntriesPerBitmap;

    private ulong _indexBlock;

    protected override ulong MaxNrBlocks => MaxBlocks;

    private MetadataSpaceMap(TransactionManager tm, ulong nrBlocks)
        : base(tm, "metadata", nrBlocks)
    {
    }

    /// <summary>A fresh map: block 0 (the superblock) is in use; the overflow tree is created.</summary>
    public static MetadataSpaceMap Create(TransactionManager tm, ulong nrBlocks)
    {
        if (nrBlocks > MaxBlocks)
            nrBlocks = MaxBlocks;
        var sm = new MetadataSpaceMap(tm, nrBlocks);
        tm.Attach(sm);
        sm.SetCount(0, 1);
        sm.RefRoot = new BTree(tm, new PlainValue(4)).CreateEmpty();
        return sm;
    }

    public static MetadataSpaceMap Open(TransactionManager tm, SpaceMapRoot root)
    {
        if (root.NrBlocks == 0 || root.NrBlocks > MaxBlocks)
            throw new CorruptMetadataException(0, $"metadata space map claims {root.NrBlocks} blocks (1..{MaxBlocks} allowed)");
        if (root.NrBlocks > tm.Blocks.NrBlocks)
            throw new CorruptMetadataException(0, $"metadata space map claims {root.NrBlocks} blocks but the file holds {tm.Blocks.NrBlocks}");
        var sm = new MetadataSpaceMap(tm, root.NrBlocks);
        tm.Attach(sm);
        var index = tm.Read(root.BitmapRoot, BlockKind.MetadataIndex);
        var entries = new IndexEntry[NrBitmaps(root.NrBlocks)];
        for (int i = 0; i < entries.Length; i++)
            entries[i] = IndexEntry.Read(index.Data.AsSpan(16 + IndexEntry.Size * i));
        sm._indexBlock = root.BitmapRoot;
        sm.LoadCommitted(entries, root.RefCountRoot);
        return sm;
    }

    public override SpaceMapRoot Commit()
    {
        MetadataBlock index;
        do
        {
            ApplyPending();
            index = _indexBlock == 0 ? Tm.New(BlockKind.MetadataIndex) : Tm.Shadow(_indexBlock, BlockKind.MetadataIndex, out _);
            _indexBlock = index.Location;
        }
        while (HasPending);

        var entries = FinalIndex();
        var span = index.Data.AsSpan(16);
        span.Clear();
        for (int i = 0; i < entries.Length; i++)
            entries[i].Write(span[(IndexEntry.Size * i)..]);
        return new SpaceMapRoot(NrBlocks, NrAllocated, _indexBlock, RefRoot);
    }
}
