using BackupAppliance.Core;

namespace BackupAppliance.PersistentData;

/// <summary>
/// dm-transaction-manager: copy-on-write ("shadowing") of metadata blocks within a transaction.
/// A block the last committed superblock can reach is never written in place: the first change in a
/// transaction copies it to a newly allocated block, whose location the caller patches into the parent.
/// Freed blocks stay unallocatable until the commit (the space map's rule).
/// </summary>
public sealed class TransactionManager
{
    private readonly HashSet<ulong> _shadowed = new();
    private MetadataSpaceMap? _sm;

    public TransactionManager(BlockManager blocks) => Blocks = blocks;

    public BlockManager Blocks { get; }

    public MetadataSpaceMap SpaceMap => _sm ?? throw new InvalidOperationException("no metadata space map attached");

    /// <summary>The metadata space map allocates through this manager, so it is attached after both exist.</summary>
    public void Attach(MetadataSpaceMap sm) => _sm = sm;

    public MetadataBlock Read(ulong location, BlockKind kind) => Blocks.Read(location, kind);

    /// <summary>A zeroed block, new in this transaction (so writable in place until the commit).</summary>
    public MetadataBlock New(BlockKind kind)
    {
        ulong b = SpaceMap.Allocate();
        _shadowed.Add(b);
        return Blocks.Create(b, kind);
    }

    /// <summary>
    /// A writable version of <paramref name="location"/>. <paramref name="wasShared"/> tells the caller
    /// that the original stays referenced elsewhere, so the copy's children gained a referrer.
    /// </summary>
    public MetadataBlock Shadow(ulong location, BlockKind kind, out bool wasShared)
    {
        uint count = SpaceMap.Count(location);
        if (count == 0)
            throw new CorruptMetadataException(location, $"shadowing a {BlockKinds.Describe(kind)} whose reference count is 0");
        wasShared = count > 1;
        if (!wasShared && _shadowed.Contains(location))
        {
            var same = Blocks.Read(location, kind);
            Blocks.MarkDirty(same);
            return same;
        }
        var orig = Blocks.Read(location, kind);
        ulong n = SpaceMap.Allocate();
        _shadowed.Add(n);
        var copy = Blocks.Create(n, kind);
        orig.Data.AsSpan(4).CopyTo(copy.Data.AsSpan(4));
        SpaceMap.Dec(location);
        return copy;
    }

    public void Inc(ulong location) => SpaceMap.Inc(location);
    public void Dec(ulong location) => SpaceMap.Dec(location);
    public uint RefCount(ulong location) => SpaceMap.Count(location);

    public bool IsShadowed(ulong location) => _shadowed.Contains(location);

    /// <summary>After the superblock is durable: everything written becomes the committed state.</summary>
    public void EndTransaction()
    {
        _shadowed.Clear();
        Blocks.Trim();
    }

    /// <summary>Forgets the uncommitted transaction (the caller re-opens from the committed superblock).</summary>
    public void Abort()
    {
        _shadowed.Clear();
        Blocks.DropCache();
    }
}
