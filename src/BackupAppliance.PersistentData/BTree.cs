using BackupAppliance.Core;

namespace BackupAppliance.PersistentData;

/// <summary>
/// A persistent-data btree (dm-btree.c, dm-btree-remove.c) of u64 keys. Every modification shadows
/// the path from the root (copy-on-write), so a tree reachable from the last committed superblock is
/// never changed in place; callers pass the root by reference and keep the new one.
/// Node layout, max_entries and the min-occupancy rule (every non-root node ≥ max_entries/3) are the
/// kernel's. Inserts split a full root beneath itself and a full child into a new right sibling;
/// removes rebalance children top-down exactly like the kernel's remove_raw.
/// </summary>
public sealed class BTree
{
    private readonly TransactionManager _tm;
    private readonly IValueType _vt;

    public BTree(TransactionManager tm, IValueType valueType)
    {
        _tm = tm;
        _vt = valueType;
    }

    public IValueType ValueType => _vt;

    /// <summary>A new, empty tree (a leaf root).</summary>
    public ulong CreateEmpty()
    {
        var b = _tm.New(BlockKind.BTreeNode);
        new BTreeNode(b.Data).Init(leaf: true, _vt.Size);
        return b.Location;
    }

    public bool Lookup(ulong root, ulong key, Span<byte> value)
    {
        var n = ReadNode(root);
        while (true)
        {
            int i = n.LowerBound(key);
            if (i < 0)
                return false;
            if (n.IsLeaf)
            {
                if (n.Key(i) != key)
                    return false;
                n.Value(i).CopyTo(value);
                return true;
            }
            n = ReadNode(n.Value64(i));
        }
    }

    /// <summary>Inserts or overwrites. Returns true when the key was new.</summary>
    public bool Insert(ref ulong root, ulong key, ReadOnlySpan<byte> value) => Insert(ref root, key, value, dropOld: true);

    /// <summary>
    /// Overwrites (or inserts) without dropping the old value's reference: for the levels of a
    /// multi-level tree, whose child was just shadowed (the shadow already moved the reference).
    /// </summary>
    public bool Repoint(ref ulong root, ulong key, ReadOnlySpan<byte> value) => Insert(ref root, key, value, dropOld: false);

    private bool Insert(ref ulong root, ulong key, ReadOnlySpan<byte> value, bool dropOld)
    {
        var node = ShadowNode(root);
        root = node.Location;
        MetadataBlock? parent = null;
        int parentIndex = -1;
        bool top = true;
        BTreeNode n;
        int i;
        while (true)
        {
            n = new BTreeNode(node.Data);
            if (n.NrEntries == n.MaxEntries)
            {
                if (top)
                {
                    SplitBeneath(node);
                }
                else
                {
                    node = SplitSibling(parent!, parentIndex, node, key);
                }
                n = new BTreeNode(node.Data);
            }
            i = n.LowerBound(key);
            if (n.IsLeaf)
                break;
            if (i < 0)
            {
                n.SetKey(0, key);
                i = 0;
            }
            var child = ShadowNode(n.Value64(i));
            n.SetValue64(i, child.Location);
            parent = node;
            parentIndex = i;
            node = child;
            top = false;
        }

        if (i >= 0 && n.Key(i) == key)
        {
            var old = n.Value(i);
            if (dropOld && !_vt.Equal(old, value))
                _vt.Dec(old);
            value.CopyTo(n.Value(i));
            return false;
        }
        n.InsertAt(i + 1, key, value);
        return true;
    }

    /// <summary>Removes <paramref name="key"/>, dropping its value's reference. Returns false if absent.</summary>
    public bool Remove(ref ulong root, ulong key)
    {
        var node = ShadowNode(root);
        root = node.Location;
        while (true)
        {
            var n = new BTreeNode(node.Data);
            if (n.IsLeaf)
                break;
            if (n.NrEntries == 1)
            {
                CollapseIntoParent(node);
                continue;
            }
            int i = n.LowerBound(key);
            if (i < 0)
                return false;
            if (i == 0)
                Rebalance2(node, 0);
            else if (i == n.NrEntries - 1)
                Rebalance2(node, i - 1);
            else
                Rebalance3(node, i - 1);
            n = new BTreeNode(node.Data);
            if (n.IsLeaf)
                break;
            i = n.LowerBound(key);
            if (i < 0)
                return false;
            var child = ShadowNode(n.Value64(i));
            n.SetValue64(i, child.Location);
            node = child;
        }
        var leaf = new BTreeNode(node.Data);
        int j = leaf.LowerBound(key);
        if (j < 0 || leaf.Key(j) != key)
            return false;
        _vt.Dec(leaf.Value(j));
        leaf.DeleteAt(j);
        return true;
    }

    /// <summary>dm_btree_del: drops this tree's reference; what is no longer shared is freed.</summary>
    public void Delete(ulong root)
    {
        if (_tm.RefCount(root) > 1)
        {
            _tm.Dec(root);
            return;
        }
        var n = ReadNode(root);
        if (n.IsInternal)
        {
            for (int i = 0; i < n.NrEntries; i++)
                Delete(n.Value64(i));
        }
        else
        {
            for (int i = 0; i < n.NrEntries; i++)
                _vt.Dec(n.Value(i));
        }
        _tm.Dec(root);
    }

    /// <summary>
    /// Calls <paramref name="leaf"/> for every leaf in key order (read only). Children of an internal
    /// node are read in one batch into buffers reused per depth, so a walk neither fills the cache
    /// nor allocates per node. The node passed to <paramref name="leaf"/> is valid only during the call.
    /// </summary>
    public void VisitLeaves(ulong root, Action<BTreeNode> leaf)
    {
        var n = ReadNode(root);
        if (n.IsLeaf)
        {
            leaf(n);
            return;
        }
        var levels = new List<byte[][]>();
        var top = new byte[BlockChecksum.BlockSize];
        n.Data.CopyTo(top, 0);
        VisitChildren(new BTreeNode(top), root, 0, levels, leaf);
    }

    private void VisitChildren(BTreeNode node, ulong location, int depth, List<byte[][]> levels, Action<BTreeNode> leaf)
    {
        int nr = node.NrEntries;
        if (depth >= 64)
            throw new CorruptMetadataException(location, "btree deeper than 64 levels (a cycle?)");
        if (levels.Count == depth)
            levels.Add(new byte[node.MaxEntries][]);
        var buffers = levels[depth];
        if (buffers.Length < nr)
            throw new CorruptMetadataException(location, $"internal btree node has {nr} entries");
        Span<ulong> children = stackalloc ulong[nr];
        for (int i = 0; i < nr; i++)
        {
            children[i] = node.Value64(i);
            buffers[i] ??= new byte[BlockChecksum.BlockSize];
        }
        _tm.Blocks.ReadBatch(children, BlockKind.BTreeNode, buffers);
        for (int i = 0; i < nr; i++)
        {
            var child = new BTreeNode(buffers[i]);
            child.Validate(children[i]);
            if (child.IsLeaf)
                leaf(child);
            else
                VisitChildren(child, children[i], depth + 1, levels, leaf);
        }
    }

    /// <summary>
    /// Calls <paramref name="entry"/> for each key in [<paramref name="from"/>, <paramref name="to"/>)
    /// in order, reading only the subtrees that can hold such keys. Returning false stops the walk.
    /// </summary>
    public void VisitRange(ulong root, ulong from, ulong to, Func<ulong, ReadOnlySpan<byte>, bool> entry)
    {
        if (from < to)
            VisitRange(root, from, to, entry, depth: 0);
    }

    private bool VisitRange(ulong location, ulong from, ulong to, Func<ulong, ReadOnlySpan<byte>, bool> entry, int depth)
    {
        if (depth >= 64)
            throw new CorruptMetadataException(location, "btree deeper than 64 levels (a cycle?)");
        var n = ReadNode(location);
        int nr = n.NrEntries;
        if (n.IsLeaf)
        {
            for (int i = Math.Max(0, n.LowerBound(from)); i < nr; i++)
            {
                ulong k = n.Key(i);
                if (k >= to)
                    return false;
                if (k >= from && !entry(k, n.Value(i)))
                    return false;
            }
            return true;
        }
        // Child i holds keys in [key(i), key(i+1)); start at the child that may hold 'from'.
        Span<ulong> keys = stackalloc ulong[nr];
        Span<ulong> children = stackalloc ulong[nr];
        for (int i = 0; i < nr; i++)
        {
            keys[i] = n.Key(i);
            children[i] = n.Value64(i);
        }
        for (int i = Math.Max(0, n.LowerBound(from)); i < nr && keys[i] < to; i++)
            if (!VisitRange(children[i], from, to, entry, depth + 1))
                return false;
        return true;
    }

    /// <summary>All (key, u64 value) pairs in order; for trees with 8-byte values.</summary>
    public IEnumerable<KeyValuePair<ulong, ulong>> Entries64(ulong root)
    {
        var list = new List<KeyValuePair<ulong, ulong>>();
        VisitLeaves(root, n =>
        {
            for (int i = 0; i < n.NrEntries; i++)
                list.Add(new(n.Key(i), n.Value64(i)));
        });
        return list;
    }

    public BTreeNode ReadNode(ulong location)
    {
        var n = new BTreeNode(_tm.Read(location, BlockKind.BTreeNode).Data);
        n.Validate(location);
        return n;
    }

    private MetadataBlock ShadowNode(ulong location)
    {
        var b = _tm.Shadow(location, BlockKind.BTreeNode, out bool shared);
        var n = new BTreeNode(b.Data);
        if (n.ValueSize != (n.IsInternal ? 8 : _vt.Size) || n.NrEntries > n.MaxEntries)
            throw new CorruptMetadataException(location, $"btree node has value_size {n.ValueSize}, nr_entries {n.NrEntries}, max_entries {n.MaxEntries}");
        if (shared)
            IncChildren(n);
        return b;
    }

    private void IncChildren(BTreeNode n)
    {
        if (n.IsInternal)
        {
            for (int i = 0; i < n.NrEntries; i++)
                _tm.Inc(n.Value64(i));
        }
        else
        {
            for (int i = 0; i < n.NrEntries; i++)
                _vt.Inc(n.Value(i));
        }
    }

    /// <summary>btree_split_beneath: the root's entries move into two new children; the root becomes internal.</summary>
    private void SplitBeneath(MetadataBlock rootBlock)
    {
        var root = new BTreeNode(rootBlock.Data);
        int nr = root.NrEntries;
        int nrLeft = nr / 2, nrRight = nr - nrLeft;
        var lb = _tm.New(BlockKind.BTreeNode);
        var rb = _tm.New(BlockKind.BTreeNode);
        var left = new BTreeNode(lb.Data);
        var right = new BTreeNode(rb.Data);
        left.Init(root.IsLeaf, root.ValueSize);
        right.Init(root.IsLeaf, root.ValueSize);
        left.CopyEntries(0, root, 0, nrLeft);
        left.NrEntries = nrLeft;
        right.CopyEntries(0, root, nrLeft, nrRight);
        right.NrEntries = nrRight;

        root.Init(leaf: false, 8);
        root.NrEntries = 2;
        root.SetKey(0, left.Key(0));
        root.SetValue64(0, lb.Location);
        root.SetKey(1, right.Key(0));
        root.SetValue64(1, rb.Location);
    }

    /// <summary>btree_split_sibling: the upper half moves into a new right sibling. Returns the half holding <paramref name="key"/>.</summary>
    private MetadataBlock SplitSibling(MetadataBlock parentBlock, int parentIndex, MetadataBlock leftBlock, ulong key)
    {
        var parent = new BTreeNode(parentBlock.Data);
        var left = new BTreeNode(leftBlock.Data);
        int nr = left.NrEntries;
        int nrLeft = nr / 2, nrRight = nr - nrLeft;
        var rb = _tm.New(BlockKind.BTreeNode);
        var right = new BTreeNode(rb.Data);
        right.Init(left.IsLeaf, left.ValueSize);
        right.CopyEntries(0, left, nrLeft, nrRight);
        right.NrEntries = nrRight;
        left.NrEntries = nrLeft;
        left.ClearTail();

        Span<byte> loc = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(loc, rb.Location);
        parent.InsertAt(parentIndex + 1, right.Key(0), loc);
        return key >= right.Key(0) ? rb : leftBlock;
    }

    /// <summary>A root with a single child takes the child's contents (the tree loses a level).</summary>
    private void CollapseIntoParent(MetadataBlock node)
    {
        var n = new BTreeNode(node.Data);
        ulong childLoc = n.Value64(0);
        var child = _tm.Read(childLoc, BlockKind.BTreeNode);
        child.Data.AsSpan(4).CopyTo(node.Data.AsSpan(4));
        if (_tm.RefCount(childLoc) > 1)
            IncChildren(new BTreeNode(node.Data)); // the child stays alive elsewhere: its children gain a referrer
        _tm.Dec(childLoc);
    }

    private static int MergeThreshold(BTreeNode n) => n.MaxEntries / 3;

    private (MetadataBlock block, BTreeNode node) ShadowChild(BTreeNode parent, int index)
    {
        var b = ShadowNode(parent.Value64(index));
        parent.SetValue64(index, b.Location);
        return (b, new BTreeNode(b.Data));
    }

    private void Rebalance2(MetadataBlock parentBlock, int leftIndex)
    {
        var parent = new BTreeNode(parentBlock.Data);
        var (_, left) = ShadowChild(parent, leftIndex);
        var (rb, right) = ShadowChild(parent, leftIndex + 1);
        Rebalance2(parent, left, right, rb, leftIndex + 1);
    }

    private void Rebalance2(BTreeNode parent, BTreeNode left, BTreeNode right, MetadataBlock rightBlock, int rightIndex)
    {
        int nrLeft = left.NrEntries, nrRight = right.NrEntries;
        int threshold = 2 * (MergeThreshold(left) + 1);
        if (nrLeft + nrRight < threshold)
        {
            left.CopyEntries(nrLeft, right, 0, nrRight);
            left.NrEntries = nrLeft + nrRight;
            parent.DeleteAt(rightIndex);
            // right's children now belong to left: drop only the node itself.
            _tm.Dec(rightBlock.Location);
        }
        else
        {
            int targetLeft = (nrLeft + nrRight) / 2;
            Shift(left, right, nrLeft - targetLeft);
            parent.SetKey(rightIndex, right.Key(0));
        }
    }

    private void Rebalance3(MetadataBlock parentBlock, int leftIndex)
    {
        var parent = new BTreeNode(parentBlock.Data);
        var (_, left) = ShadowChild(parent, leftIndex);
        var (cb, center) = ShadowChild(parent, leftIndex + 1);
        var (rb, right) = ShadowChild(parent, leftIndex + 2);
        if (left.MaxEntries != center.MaxEntries || center.MaxEntries != right.MaxEntries)
            throw new CorruptMetadataException(parentBlock.Location, "children of one btree node have different max_entries");
        int nrLeft = left.NrEntries, nrCenter = center.NrEntries, nrRight = right.NrEntries;
        int threshold = MergeThreshold(left) * 4 + 1;
        if (nrLeft + nrCenter + nrRight < threshold)
        {
            // Delete the center node: fill left from it, the rest goes to the front of right.
            int max = left.MaxEntries;
            int shift = Math.Min(max - nrLeft, nrCenter);
            left.CopyEntries(nrLeft, center, 0, shift);
            left.NrEntries = nrLeft + shift;
            if (shift != nrCenter)
            {
                int rest = nrCenter - shift;
                right.ShiftEntries(rest);
                right.CopyEntries(0, center, shift, rest);
                right.NrEntries = nrRight + rest;
            }
            parent.SetKey(leftIndex + 2, right.Key(0));
            parent.DeleteAt(leftIndex + 1);
            _tm.Dec(cb.Location);
            Rebalance2(parent, left, right, rb, leftIndex + 1);
        }
        else
        {
            Redistribute3(left, center, right);
            parent.SetKey(leftIndex + 1, center.Key(0));
            parent.SetKey(leftIndex + 2, right.Key(0));
        }
    }

    private static void Redistribute3(BTreeNode left, BTreeNode center, BTreeNode right)
    {
        int nrLeft = left.NrEntries, nrCenter = center.NrEntries, nrRight = right.NrEntries;
        int total = nrLeft + nrCenter + nrRight;
        int targetRight = total / 3;
        int remainder = targetRight * 3 != total ? 1 : 0;
        int targetLeft = targetRight + remainder;
        if (nrLeft < nrRight)
        {
            int s = nrLeft - targetLeft;
            if (s < 0 && nrCenter < -s)
            {
                Shift(left, center, -nrCenter);
                s += nrCenter;
                Shift(left, right, s);
                nrRight += s;
            }
            else
            {
                Shift(left, center, s);
            }
            Shift(center, right, targetRight - nrRight);
        }
        else
        {
            int s = targetRight - nrRight;
            if (s > 0 && nrCenter < s)
            {
                Shift(center, right, nrCenter);
                s -= nrCenter;
                Shift(left, right, s);
                nrLeft -= s;
            }
            else
            {
                Shift(center, right, s);
            }
            Shift(left, center, nrLeft - targetLeft);
        }
    }

    /// <summary>count &gt; 0 moves left's last entries to the front of right; count &lt; 0 moves right's first to the end of left.</summary>
    private static void Shift(BTreeNode left, BTreeNode right, int count)
    {
        if (count == 0)
            return;
        int nrLeft = left.NrEntries, nrRight = right.NrEntries;
        if (count > 0)
        {
            right.ShiftEntries(count);
            right.CopyEntries(0, left, nrLeft - count, count);
            right.NrEntries = nrRight + count;
            left.NrEntries = nrLeft - count;
            left.ClearTail();
        }
        else
        {
            int c = -count;
            left.CopyEntries(nrLeft, right, 0, c);
            left.NrEntries = nrLeft + c;
            right.ShiftEntries(-c);
            right.NrEntries = nrRight - c;
        }
    }
}
