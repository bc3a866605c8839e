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
                else if (a.LowKey <= b.LowKey)
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
    /// yet read) or on a leaf entry.
    /// </summary>
    private sealed class TreeCursor
    {
        private readonly ThinReader _reader;
        private readonly Stack<(BTreeNode Node, int Index)> _stack = new();

        public TreeCursor(ThinReader reader, ulong root)
        {
            _reader = reader;
            Push(root);
            Settle();
        }

        public bool Done => _stack.Count == 0;
        private (BTreeNode Node, int Index) Top => _stack.Peek();
        public bool AtSubtree => Top.Node.IsInternal;
        public ulong SubtreeBlock => Top.Node.Value64(Top.Index);
        public ulong LowKey => Top.Node.Key(Top.Index);
        public ulong Key => Top.Node.Key(Top.Index);
        public ulong DataBlock => Top.Node.Value64(Top.Index) >> 24;

        public void Descend()
        {
            ulong child = SubtreeBlock;
            Advance();
            Push(child);
            Settle();
        }

        public void SkipSubtree()
        {
            Advance();
            Settle();
        }

        /// <summary>Moves past the current leaf entry.</summary>
        public void Next()
        {
            Advance();
            Settle();
        }

        private void Push(ulong block)
        {
            // Own copy of the node: the reader's cache may drop the buffer while we hold a position.
            var node = _reader.ReadNode(block);
            var copy = new BTreeNode((byte[])node.Data.Clone());
            _stack.Push((copy, 0));
        }

        private void Advance()
        {
            var (n, i) = _stack.Pop();
            _stack.Push((n, i + 1));
        }

        // Pop exhausted nodes. A child pushed by Descend is pushed above its parent, whose index already moved on.
        private void Settle()
        {
            while (_stack.Count > 0 && Top.Index >= Top.Node.NrEntries)
                _stack.Pop();
        }
    }
}
