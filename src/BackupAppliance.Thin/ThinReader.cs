using System.Buffers.Binary;
using BackupAppliance.Core;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin;

/// <summary>
/// A read-only view of thin metadata through one superblock: the live one (block 0) or a metadata
/// snapshot's copy (held root). Needs no space map, so it serves dump, delta and the agent's walks on
/// a live pool's snapshot, and on kernel-made metadata.
/// </summary>
public sealed class ThinReader : IDisposable
{
    private readonly BlockManager _bm;
    private readonly bool _ownsBlocks;
    private readonly BTree _top;
    private readonly BTree _details;
    private readonly BTree _mappings;

    private ThinReader(BlockManager bm, bool ownsBlocks, ThinSuperblock sb, ThinSuperblock live)
    {
        _bm = bm;
        _ownsBlocks = ownsBlocks;
        Superblock = sb;
        LiveSuperblock = live;
        var tm = new TransactionManager(bm);
        _top = new BTree(tm, new PlainValue(8));
        _details = new BTree(tm, new PlainValue(DeviceDetails.Size));
        _mappings = new BTree(tm, new PlainValue(8));
    }

    /// <summary>The superblock whose trees this reader walks.</summary>
    public ThinSuperblock Superblock { get; }

    /// <summary>Block 0 (differs from <see cref="Superblock"/> when reading a metadata snapshot).</summary>
    public ThinSuperblock LiveSuperblock { get; }

    public bool IsMetadataSnapshot => Superblock.BlockNr != 0;

    /// <summary>
    /// Opens <paramref name="path"/>. With <paramref name="metadataSnapshot"/> the held root is used;
    /// <paramref name="expectedSnapshotBlock"/>, if given, must match it (thin_dump -mBLOCK).
    /// </summary>
    public static ThinReader Open(string path, bool metadataSnapshot = false, ulong? expectedSnapshotBlock = null)
    {
        var bm = new BlockManager(path, writable: false);
        try
        {
            return Open(bm, ownsBlocks: true, metadataSnapshot, expectedSnapshotBlock);
        }
        catch
        {
            bm.Dispose();
            throw;
        }
    }

    public static ThinReader Open(BlockManager bm, bool ownsBlocks, bool metadataSnapshot, ulong? expectedSnapshotBlock)
    {
        var raw = new byte[BlockChecksum.BlockSize];
        bm.ReadRaw(0, raw);
        var live = ThinMetadata.ValidateSuperblock(raw, 0);
        var sb = live;
        if (metadataSnapshot)
        {
            if (live.HeldRoot == 0)
                throw new InvalidOperationException("no current metadata snap");
            if (expectedSnapshotBlock is { } want && want != live.HeldRoot)
                throw new InvalidOperationException("metadata snapshot does not match that in superblock");
            var snapRaw = new byte[BlockChecksum.BlockSize];
            bm.ReadRaw(live.HeldRoot, snapRaw);
            sb = ThinMetadata.ValidateSuperblock(snapRaw, live.HeldRoot);
        }
        return new ThinReader(bm, ownsBlocks, sb, live);
    }

    /// <summary>Data blocks as the read superblock records them (0 for a metadata snapshot, like thin_dump).</summary>
    public ulong NrDataBlocks => Superblock.DataSpaceMapRoot.NrBlocks;

    /// <summary>(device id, mapping-tree root) in ascending id order.</summary>
    public IReadOnlyList<(ulong Dev, ulong Root)> Devices()
    {
        var list = new List<(ulong, ulong)>();
        _top.VisitLeaves(Superblock.DataMappingRoot, n =>
        {
            for (int i = 0; i < n.NrEntries; i++)
                list.Add((n.Key(i), n.Value64(i)));
        });
        return list;
    }

    public ulong? MappingRoot(ulong dev)
    {
        Span<byte> v = stackalloc byte[8];
        return _top.Lookup(Superblock.DataMappingRoot, dev, v) ? BinaryPrimitives.ReadUInt64LittleEndian(v) : null;
    }

    public DeviceDetails? Details(ulong dev)
    {
        Span<byte> v = stackalloc byte[DeviceDetails.Size];
        return _details.Lookup(Superblock.DeviceDetailsRoot, dev, v) ? DeviceDetails.Read(v) : null;
    }

    /// <summary>Visits the leaves of a device's mapping tree in order.</summary>
    public void VisitMappings(ulong root, Action<BTreeNode> leaf) => _mappings.VisitLeaves(root, leaf);

    public BTreeNode ReadNode(ulong block) => _mappings.ReadNode(block);

    /// <summary>Blocks read from the file and read calls issued so far.</summary>
    public (long Blocks, long Calls) ReadStats => (_bm.BlocksRead, _bm.ReadCalls);

    /// <summary>Reads a node into a caller's buffer (uncached), validated.</summary>
    public BTreeNode ReadNodeInto(ulong block, byte[] into)
    {
        _bm.ReadInto(block, BlockKind.BTreeNode, into);
        var n = new BTreeNode(into);
        n.Validate(block);
        return n;
    }

    /// <summary>Reads several nodes (uncached) with as few read calls as possible; validate each before use.</summary>
    public void ReadNodesInto(ReadOnlySpan<ulong> blocks, byte[][] into) => _bm.ReadBatch(blocks, BlockKind.BTreeNode, into);

    public void Dispose()
    {
        if (_ownsBlocks)
            _bm.Dispose();
    }
}
