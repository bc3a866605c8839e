using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin.Tests.Support;

/// <summary>
/// Offline edits of a thin metadata file at the raw-block level, in place, for the checker and lister
/// tests: kernel operations thin_restore cannot express (create_snap sharing a whole mapping tree, a
/// COW of the details leaf after a metadata snapshot) and the damage a bad disk or a buggy writer
/// leaves. Each edit reseals what it touches, so only the intended fault remains. Assumes what
/// thin_restore writes for small pools: one metadata index block, a data-sm index and top-level/details
/// trees that are single leaves.
/// </summary>
public static class RawPoolEdit
{
    private const int BlockSize = BlockChecksum.BlockSize;

    public static byte[] ReadBlock(string path, ulong block)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var data = new byte[BlockSize];
        f.Position = (long)block * BlockSize;
        f.ReadExactly(data);
        return data;
    }

    public static void WriteBlock(string path, ulong block, byte[] data)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        f.Position = (long)block * BlockSize;
        f.Write(data, 0, BlockSize);
    }

    /// <summary>Writes the block back with a fresh checksum and self-location, as a writer would.</summary>
    public static void Seal(string path, ulong block, byte[] data, BlockKind kind)
    {
        BlockChecksum.Seal(data, block, kind);
        WriteBlock(path, block, data);
    }

    /// <summary>Flips bit 6 of one byte without resealing: what a bad sector does.</summary>
    public static void FlipByte(string path, ulong block, int offset)
    {
        var data = ReadBlock(path, block);
        data[offset] ^= 0x40;
        WriteBlock(path, block, data);
    }

    public static ThinSuperblock Superblock(string path) => new(ReadBlock(path, 0));

    public static void WriteSuperblock(string path, ThinSuperblock sb) => Seal(path, 0, sb.Raw, BlockKind.ThinSuperblock);

    public static BTreeNode Node(string path, ulong block) => new(ReadBlock(path, block));

    public static void WriteNode(string path, ulong block, BTreeNode node) => Seal(path, block, node.Data, BlockKind.BTreeNode);

    // ---- space maps

    /// <summary>Where a metadata block's 2-bit count lives: (bitmap block, entry).</summary>
    public static (ulong Bitmap, int Entry) MetadataSlot(string path, ulong block)
    {
        var index = ReadBlock(path, Superblock(path).MetadataSpaceMapRoot.BitmapRoot);
        int i = (int)(block / (ulong)SpaceMapBitmap.EntriesPerBlock);
        var ie = IndexEntry.Read(index.AsSpan(16 + IndexEntry.Size * i));
        return (ie.BlockNr, (int)(block % (ulong)SpaceMapBitmap.EntriesPerBlock));
    }

    /// <summary>Where a data block's 2-bit count lives (the data-sm index root must be a leaf).</summary>
    public static (ulong Bitmap, int Entry) DataSlot(string path, ulong dataBlock)
    {
        var index = Node(path, Superblock(path).DataSpaceMapRoot.BitmapRoot);
        Assert.True(index.IsLeaf, "data space map index is a single leaf");
        ulong key = dataBlock / (ulong)SpaceMapBitmap.EntriesPerBlock;
        int i = index.LowerBound(key);
        Assert.Equal(key, index.Key(i));
        return (IndexEntry.Read(index.Value(i)).BlockNr, (int)(dataBlock % (ulong)SpaceMapBitmap.EntriesPerBlock));
    }

    public static uint MetadataCount(string path, ulong block) => GetCount(path, MetadataSlot(path, block));

    public static uint DataCount(string path, ulong dataBlock) => GetCount(path, DataSlot(path, dataBlock));

    /// <summary>Sets a bitmap entry (0..2) and reseals the bitmap; the overflow tree is left alone.</summary>
    public static void SetMetadataCount(string path, ulong block, uint count) => SetCount(path, MetadataSlot(path, block), count);

    public static void SetDataCount(string path, ulong dataBlock, uint count) => SetCount(path, DataSlot(path, dataBlock), count);

    public static ulong FirstFreeMetadataBlock(string path)
    {
        ulong nr = Superblock(path).MetadataSpaceMapRoot.NrBlocks;
        for (ulong b = 1; b < nr; b++)
            if (MetadataCount(path, b) == 0)
                return b;
        throw new InvalidOperationException("metadata full");
    }

    private static uint GetCount(string path, (ulong Bitmap, int Entry) slot) =>
        SpaceMapBitmap.Get(ReadBlock(path, slot.Bitmap), slot.Entry);

    private static void SetCount(string path, (ulong Bitmap, int Entry) slot, uint count)
    {
        Assert.InRange(count, 0u, 2u);
        var bitmap = ReadBlock(path, slot.Bitmap);
        Assert.NotEqual(3u, SpaceMapBitmap.Get(bitmap, slot.Entry));
        SpaceMapBitmap.Set(bitmap, slot.Entry, count);
        Seal(path, slot.Bitmap, bitmap, BlockKind.Bitmap);
    }

    // ---- trees

    /// <summary>The leaf of the tree at <paramref name="root"/> that holds (or would hold) <paramref name="key"/>.</summary>
    public static ulong LeafFor(string path, ulong root, ulong key)
    {
        ulong b = root;
        for (var n = Node(path, b); n.IsInternal; n = Node(path, b))
            b = n.Value64(Math.Max(0, n.LowerBound(key)));
        return b;
    }

    /// <summary>Every leaf of a tree, left to right.</summary>
    public static List<ulong> Leaves(string path, ulong root)
    {
        var n = Node(path, root);
        if (n.IsLeaf)
            return new List<ulong> { root };
        var leaves = new List<ulong>();
        for (int i = 0; i < n.NrEntries; i++)
            leaves.AddRange(Leaves(path, n.Value64(i)));
        return leaves;
    }

    /// <summary>Root block of a device's mapping tree (from the top level of the mapping tree).</summary>
    public static ulong DeviceRoot(string path, ulong dev)
    {
        ulong leaf = LeafFor(path, Superblock(path).DataMappingRoot, dev);
        var n = Node(path, leaf);
        int i = n.LowerBound(dev);
        Assert.True(i >= 0 && n.Key(i) == dev, $"device {dev} has a mapping tree");
        return n.Value64(i);
    }

    /// <summary>The details-tree leaf holding <paramref name="dev"/> and its index in it.</summary>
    public static (ulong Leaf, int Index) DetailsSlot(string path, ulong dev)
    {
        ulong leaf = LeafFor(path, Superblock(path).DeviceDetailsRoot, dev);
        var n = Node(path, leaf);
        int i = n.LowerBound(dev);
        Assert.True(i >= 0 && n.Key(i) == dev, $"device {dev} has details");
        return (leaf, i);
    }

    public static void ChangeDetails(string path, ulong dev, Func<DeviceDetails, DeviceDetails> change)
    {
        var (leaf, i) = DetailsSlot(path, dev);
        var n = Node(path, leaf);
        change(DeviceDetails.Read(n.Value(i))).Write(n.Value(i));
        WriteNode(path, leaf, n);
    }

    // ---- kernel operations

    /// <summary>
    /// dm-thin create_snap (§5.4): the new device shares the origin's whole mapping tree (its root's
    /// count + 1), time advances, and both devices' snapshot times become the new time. The top level
    /// and the details tree must be single unshared leaves (no metadata snapshot yet).
    /// </summary>
    public static void CreateSnapshot(string path, ulong origin, ulong id)
    {
        var sb = Superblock(path);
        uint time = sb.Time + 1;
        ulong originRoot = DeviceRoot(path, origin);

        var top = Node(path, sb.DataMappingRoot);
        Assert.True(top.IsLeaf);
        var rootBytes = BitConverter.GetBytes(originRoot);
        top.InsertAt(top.LowerBound(id) + 1, id, rootBytes);
        WriteNode(path, sb.DataMappingRoot, top);
        SetMetadataCount(path, originRoot, MetadataCount(path, originRoot) + 1);

        var details = Node(path, sb.DeviceDetailsRoot);
        Assert.True(details.IsLeaf);
        int o = details.LowerBound(origin);
        var od = DeviceDetails.Read(details.Value(o));
        (od with { SnapshottedTime = time }).Write(details.Value(o));
        var nd = new byte[DeviceDetails.Size];
        new DeviceDetails(od.MappedBlocks, sb.TransactionId, time, time).Write(nd);
        details.InsertAt(details.LowerBound(id) + 1, id, nd);
        WriteNode(path, sb.DeviceDetailsRoot, details);

        sb.Time = time;
        WriteSuperblock(path, sb);
    }

    /// <summary>
    /// After a metadata snapshot shares the details root, change the live view only: shadow the details
    /// leaf into a free block (old count − 1, new block count 1) and point the live superblock at it.
    /// </summary>
    public static void CowDetails(string path, ulong dev, Func<DeviceDetails, DeviceDetails> change)
    {
        var sb = Superblock(path);
        ulong old = sb.DeviceDetailsRoot;
        Assert.Equal(2u, MetadataCount(path, old));
        ulong copy = FirstFreeMetadataBlock(path);
        var n = Node(path, old);
        Assert.True(n.IsLeaf);
        int i = n.LowerBound(dev);
        change(DeviceDetails.Read(n.Value(i))).Write(n.Value(i));
        WriteNode(path, copy, n);
        SetMetadataCount(path, copy, 1);
        SetMetadataCount(path, old, 1);
        sb = Superblock(path);
        sb.DeviceDetailsRoot = copy;
        WriteSuperblock(path, sb);
    }
}
