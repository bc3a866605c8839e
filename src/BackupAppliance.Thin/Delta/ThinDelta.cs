using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin.Delta;

/// <summary>
/// What changed between two thin devices. <see cref="Full"/> is thin_delta's algorithm (merge of the
/// two run lists; reports <c>same</c> ranges, so it walks every mapping). <see cref="ChangesOnly"/>
/// walks both trees together and skips any subtree that both devices reach through the same block —
/// after a snapshot, untouched subtrees are shared, so its cost follows the changes, not the size.
/// </summary>
public static class ThinDelta
{
    public static void Full(ThinReader reader, ulong leftRoot, ulong rightRoot, IDeltaVisitor visitor)
    {
        var left = MappingRuns.Of(reader, leftRoot);
        var right = MappingRuns.Of(reader, rightRoot);
        int li = 0, ri = 0;
        MappingRun l = default, r = default;
        bool haveL = false, haveR = false;
        while (true)
        {
            if (!haveL && li < left.Count) { l = left[li++]; haveL = true; }
            if (!haveR && ri < right.Count) { r = right[ri++]; haveR = true; }
            if (!haveL || !haveR)
                break;
            if (l.VBegin < r.VBegin)
            {
                ulong n = Math.Min(l.Length, r.VBegin - l.VBegin);
                visitor.Range(new DeltaRange(DeltaKind.LeftOnly, l.VBegin, n, l.DBegin, 0));
                l = Consume(l, n, ref haveL);
            }
            else if (l.VBegin > r.VBegin)
            {
                ulong n = Math.Min(r.Length, l.VBegin - r.VBegin);
                visitor.Range(new DeltaRange(DeltaKind.RightOnly, r.VBegin, n, 0, r.DBegin));
                r = Consume(r, n, ref haveR);
            }
            else
            {
                ulong n = Math.Min(l.Length, r.Length);
                var kind = l.DBegin == r.DBegin ? DeltaKind.Same : DeltaKind.Different;
                visitor.Range(new DeltaRange(kind, l.VBegin, n, l.DBegin, r.DBegin));
                l = Consume(l, n, ref haveL);
                r = Consume(r, n, ref haveR);
            }
        }
        for (; haveL; haveL = li < left.Count, l = haveL ? left[li++] : default)
            visitor.Range(new DeltaRange(DeltaKind.LeftOnly, l.VBegin, l.Length, l.DBegin, 0));
        for (; haveR; haveR = ri < right.Count, r = haveR ? right[ri++] : default)
            visitor.Range(new DeltaRange(DeltaKind.RightOnly, r.VBegin, r.Length, 0, r.DBegin));
    }

    private static MappingRun Consume(MappingRun run, ulong n, ref bool have)
    {
        if (n >= run.Length)
        {
            have = false;
            return default;
        }
        return new MappingRun(run.VBegin + n, run.DBegin + n, run.Length - n);
    }

    /// <summary>
    /// Only <c>different</c>, <c>left_only</c> and <c>right_only</c> ranges, one virtual block per
    /// call (the caller merges), in ascending order. Subtrees reached through the same block on both
    /// sides are skipped without being read.
    /// </summary>
    public static void ChangesOnly(ThinReader reader, ulong leftRoot, ulong rightRoot, IDeltaVisitor visitor)
    {
        if (leftRoot == rightRoot)
            return;
        var a = new TreeCursor(reader, leftRoot);
        var b = new TreeCursor(reader, rightRoot);
        while (!a.Done && !b.Done)
        {
            if (a.AtSubtree && b.AtSubtree)
            {
                if (a.SubtreeBlock == b.SubtreeBlock && a.LowKey == b.LowKey)
                {
                    a.SkipSubtree();
                    b.SkipSubtree();
                }
                else if (a.LowKey == b.LowKey)
                {
                    a.Descend();
                    b.Descend();
                    PrefetchUnshared(a, b);
                }
                else if (a.LowKey < b.LowKey)
                    a.Descend();
                else
                    b.Descend();
                continue;
            }
            if (a.AtSubtree)
            {
                if (b.Key < a.LowKey)
                {
                    visitor.Range(new DeltaRange(DeltaKind.RightOnly, b.Key, 1, 0, b.DataBlock));
                    b.Next();
                }
                else
                    a.Descend();
                continue;
            }
            if (b.AtSubtree)
            {
                if (a.Key < b.LowKey)
                {
                    visitor.Range(new DeltaRange(DeltaKind.LeftOnly, a.Key, 1, a.DataBlock, 0));
                    a.Next();
                }
                else
                    b.Descend();
                continue;
            }
            if (a.AtLeafStart && b.AtLeafStart && CompareAlignedLeaves(a.Leaf, b.Leaf, visitor))
            {
                a.FinishLeaf();
                b.FinishLeaf();
                continue;
            }
            if (a.Key < b.Key)
            {
                visitor.Range(new DeltaRange(DeltaKind.LeftOnly, a.Key, 1, a.DataBlock, 0));
                a.Next();
            }
            else if (a.Key > b.Key)
            {
                visitor.Range(new DeltaRange(DeltaKind.RightOnly, b.Key, 1, 0, b.DataBlock));
                b.Next();
            }
            else
            {
                if (a.DataBlock != b.DataBlock)
                    visitor.Range(new DeltaRange(DeltaKind.Different, a.Key, 1, a.DataBlock, b.DataBlock));
                a.Next();
                b.Next();
            }
        }
        Drain(a, DeltaKind.LeftOnly, visitor);
        Drain(b, DeltaKind.RightOnly, visitor);
    }

    /// <summary>
    /// Two leaves with the same keys (a leaf and its copy-on-write copy, the common case after a
    /// snapshot): compare the value arrays word by word and report only entries whose data block
    /// differs. Returns false when the keys differ (the caller walks entry by entry).
    /// </summary>
    private static bool CompareAlignedLeaves(BTreeNode left, BTreeNode right, IDeltaVisitor visitor)
    {
        if (!BitConverter.IsLittleEndian || left.NrEntries != right.NrEntries || !left.KeyBytes.SequenceEqual(right.KeyBytes))
            return false;
        var lv = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(left.ValueBytes);
        var rv = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ulong>(right.ValueBytes);
        for (int i = 0; i < lv.Length; i++)
        {
            ulong l = lv[i], r = rv[i];
            if (l != r && l >> 24 != r >> 24)
                visitor.Range(new DeltaRange(DeltaKind.Different, left.Key(i), 1, l >> 24, r >> 24));
        }
        return true;
    }

    /// <summary>
    /// Both cursors just entered internal nodes covering the same keys: read, in as few calls as
    /// possible, the children that only one side has; shared ones will be skipped unread.
    /// </summary>
    private static void PrefetchUnshared(TreeCursor a, TreeCursor b)
    {
        if (a.Done || b.Done || !a.AtSubtree || !b.AtSubtree)
            return;
        var ca = a.RemainingChildren();
        var cb = b.RemainingChildren();
        var inB = new HashSet<ulong>(cb);
        var inA = new HashSet<ulong>(ca);
        a.LoadChildren(ca.Where(c => !inB.Contains(c)).ToArray());
        b.LoadChildren(cb.Where(c => !inA.Contains(c)).ToArray());
    }

    private static void Drain(TreeCursor c, DeltaKind kind, IDeltaVisitor visitor)
    {
        while (!c.Done)
        {
            if (c.AtSubtree)
            {
                c.Descend();
                continue;
            }
            visitor.Range(kind == DeltaKind.LeftOnly
                ? new DeltaRange(kind, c.Key, 1, c.DataBlock, 0)
                : new DeltaRange(kind, c.Key, 1, 0, c.DataBlock));
            c.Next();
        }
    }

    /// <summary>
    /// In-order position in a btree that can stand on a whole subtree (an internal node's child, not
    /// yet read) or on a leaf entry. Each depth owns its node buffer, and may hold a batch of its
    /// children read ahead, so the walk neither fills the block cache nor allocates per node.
    /// </summary>
    private sealed class TreeCursor
    {
        private sealed class Level
        {
            public readonly byte[] Buffer = new byte[BlockChecksum.BlockSize];
            public BTreeNode Node;
            public int Index;
            public readonly Dictionary<ulong, int> Loaded = new();
            public byte[][] LoadedBlocks = [];
        }

        private readonly ThinReader _reader;
        private readonly List<Level> _levels = new();
        private int _depth = -1;

        public TreeCursor(ThinReader reader, ulong root)
        {
            _reader = reader;
            Push(root, null);
            Settle();
        }

        public bool Done => _depth < 0;
        private Level Top => _levels[_depth];
        public bool AtSubtree => Top.Node.IsInternal;
        public ulong SubtreeBlock => Top.Node.Value64(Top.Index);
        public ulong LowKey => Top.Node.Key(Top.Index);
        public ulong Key => Top.Node.Key(Top.Index);
        public ulong DataBlock => Top.Node.Value64(Top.Index) >> 24;

        /// <summary>Child blocks of the current internal node from the current position on.</summary>
        public ulong[] RemainingChildren()
        {
            var t = Top;
            var r = new ulong[t.Node.NrEntries - t.Index];
            for (int k = 0; k < r.Length; k++)
                r[k] = t.Node.Value64(t.Index + k);
            return r;
        }

        /// <summary>Reads these children of the current internal node ahead, in one batch.</summary>
        public void LoadChildren(ulong[] children)
        {
            var t = Top;
            t.Loaded.Clear();
            if (children.Length < 2)
                return;
            if (t.LoadedBlocks.Length < children.Length)
            {
                int old = t.LoadedBlocks.Length;
                Array.Resize(ref t.LoadedBlocks, Math.Max(children.Length, t.Node.MaxEntries));
                for (int i = old; i < t.LoadedBlocks.Length; i++)
                    t.LoadedBlocks[i] = new byte[BlockChecksum.BlockSize];
            }
            _reader.ReadNodesInto(children, t.LoadedBlocks);
            for (int i = 0; i < children.Length; i++)
                t.Loaded[children[i]] = i;
        }

        public void Descend()
        {
            var parent = Top;
            ulong child = parent.Node.Value64(parent.Index);
            parent.Index++;
            byte[]? ready = parent.Loaded.TryGetValue(child, out int slot) ? parent.LoadedBlocks[slot] : null;
            Push(child, ready);
            Settle();
        }

        public void SkipSubtree()
        {
            Top.Index++;
            Settle();
        }

        /// <summary>True at the first entry of a leaf.</summary>
        public bool AtLeafStart => Top.Node.IsLeaf && Top.Index == 0;

        public BTreeNode Leaf => Top.Node;

        /// <summary>Moves past every entry of the current leaf.</summary>
        public void FinishLeaf()
        {
            Top.Index = Top.Node.NrEntries;
            Settle();
        }

        /// <summary>Moves past the current leaf entry.</summary>
        public void Next()
        {
            Top.Index++;
            Settle();
        }

        private void Push(ulong block, byte[]? ready)
        {
            _depth++;
            if (_depth >= 64)
                throw new BackupAppliance.Core.CorruptMetadataException(block, "btree deeper than 64 levels (a cycle?)");
            if (_levels.Count == _depth)
                _levels.Add(new Level());
            var level = _levels[_depth];
            level.Loaded.Clear();
            if (ready is not null)
            {
                ready.CopyTo(level.Buffer, 0);
                level.Node = new BTreeNode(level.Buffer);
                level.Node.Validate(block);
            }
            else
            {
                level.Node = _reader.ReadNodeInto(block, level.Buffer);
            }
            level.Index = 0;
        }

        // Pop exhausted nodes; a parent's index already points past the child that was pushed.
        private void Settle()
        {
            while (_depth >= 0 && Top.Index >= Top.Node.NrEntries)
                _depth--;
        }
    }
}
