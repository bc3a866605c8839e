using System.Buffers.Binary;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Era.Tests.Support;

/// <summary>
/// Recomputes every metadata block's reference count of an era file from what is reachable on disk
/// (superblock, space-map index, bitmaps and overflow tree, writeset tree and the bitsets it names,
/// era array, current writeset, a metadata snapshot's copy and its trees) and compares it with the
/// committed space map. era_check 0.9.0 does not check counts, so this is the test of them.
/// </summary>
public static class EraRefAudit
{
    public static void Verify(string path, string context)
    {
        using var bm = new BlockManager(path, writable: false);
        var refs = new Dictionary<ulong, uint>();
        var walked = new HashSet<ulong>();
        void Ref(ulong b) => refs[b] = refs.GetValueOrDefault(b) + 1;
        byte[] Raw(ulong b)
        {
            var d = new byte[BlockChecksum.BlockSize];
            bm.ReadRaw(b, d);
            return d;
        }

        // A btree below root (root itself referenced by the caller); leafValue handles leaf values.
        void Tree(ulong loc, BlockKind kind, Action<ReadOnlySpan<byte>>? leafValue)
        {
            if (!walked.Add(loc))
                return;
            var d = Raw(loc);
            Assert.Null(BlockChecksum.Problem(d, loc, kind));
            var n = new BTreeNode(d);
            for (int i = 0; i < n.NrEntries; i++)
            {
                if (n.IsInternal)
                {
                    Ref(n.Value64(i));
                    Tree(n.Value64(i), kind, leafValue);
                }
                else
                {
                    leafValue?.Invoke(n.Value(i));
                }
            }
        }
        void ArrayOf(ulong root)
        {
            Ref(root);
            Tree(root, BlockKind.BTreeNode, v => Ref(BinaryPrimitives.ReadUInt64LittleEndian(v)));
        }
        void WritesetTree(ulong root)
        {
            Ref(root);
            Tree(root, BlockKind.BTreeNode, v => ArrayOf(Writeset.Read(v).Root));
        }

        var sb = new EraSuperblock(Raw(0));
        Ref(0);
        var smRoot = sb.MetadataSpaceMapRoot;
        Ref(smRoot.BitmapRoot);
        var index = Raw(smRoot.BitmapRoot);
        for (int i = 0; i < SpaceMap.NrBitmaps(smRoot.NrBlocks); i++)
            Ref(IndexEntry.Read(index.AsSpan(16 + IndexEntry.Size * i)).BlockNr);
        Ref(smRoot.RefCountRoot);
        Tree(smRoot.RefCountRoot, BlockKind.BTreeNode, null);

        WritesetTree(sb.WritesetTreeRoot);
        ArrayOf(sb.EraArrayRoot);
        if (sb.CurrentWritesetRoot != 0)
            ArrayOf(sb.CurrentWritesetRoot);
        if (sb.MetadataSnap != 0)
        {
            Ref(sb.MetadataSnap);
            var snap = EraSuperblock.Validate(Raw(sb.MetadataSnap), sb.MetadataSnap);
            WritesetTree(snap.WritesetTreeRoot);
            ArrayOf(snap.EraArrayRoot);
        }

        var tm = new TransactionManager(bm);
        var sm = MetadataSpaceMap.Open(tm, smRoot);
        var wrong = new List<string>();
        for (ulong b = 0; b < sm.NrBlocks; b++)
        {
            uint want = refs.GetValueOrDefault(b);
            uint got = sm.Count(b);
            if (want != got)
                wrong.Add($"block {b}: count {got}, referenced {want} times");
        }
        Assert.True(wrong.Count == 0, $"{context}: {wrong.Count} wrong counts, e.g. {string.Join("; ", wrong.Take(8))}");
        Assert.Equal((ulong)refs.Count, sm.NrAllocated);
    }
}
