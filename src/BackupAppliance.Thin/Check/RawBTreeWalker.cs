using System.Buffers.Binary;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin.Check;

/// <summary>
/// Walks persistent-data btrees straight from raw blocks and judges every node the way thin_check's
/// btree_node_checker does (dm-btree-internal.h layout), plus a few checks it lacks (cycles, depth,
/// leaves at different heights, nodes shared between trees of different kinds).
///
/// Hard damage (unreadable, bad checksum or location, bad flags/value size/max_entries/nr_entries)
/// stops the walk below that node. Soft damage (too few entries, keys out of order, parent key or
/// leaf overlap) is reported and the walk goes on, because the node can still be read.
///
/// With <c>shareNodes</c> a node is inspected and descended only the first time it is reached (the
/// metadata is a DAG once snapshots share subtrees), while every reference still counts in the
/// optional <see cref="BlockCounter"/> — exactly the expected metadata reference count. Without it
/// every path is walked again (thin_ls counts a shared mapping once per device).
/// </summary>
public sealed class RawBTreeWalker
{
    /// <summary>A btree of fan-out ≥ 84 (non-root minimum) this deep would exceed 2^64 entries.</summary>
    public const int MaxDepth = 16;

    public delegate void LeafVisitor(ulong block, BTreeNode leaf);

    private readonly RawMetadataFile _file;
    private readonly ulong _limit;
    private readonly Action<CheckProblem> _report;
    private readonly bool _shareNodes;
    private readonly BlockCounter? _counter;
    private readonly Dictionary<ulong, NodeInfo> _seen = new();
    private readonly HashSet<ulong> _onPath = new();

    /// <param name="limit">Blocks at or beyond this are outside the metadata device (or its space map).</param>
    public RawBTreeWalker(RawMetadataFile file, ulong limit, Action<CheckProblem> report, bool shareNodes = true, BlockCounter? counter = null)
    {
        _file = file;
        _limit = Math.Min(limit, file.NrBlocks);
        _report = report;
        _shareNodes = shareNodes;
        _counter = counter;
    }

    /// <summary>
    /// True once some node could not be interpreted, so counts gathered by this walker are lower bounds.
    /// </summary>
    public bool CutShort { get; private set; }

    /// <summary>
    /// Walks the tree at <paramref name="root"/>; <paramref name="onLeaf"/> sees each readable leaf
    /// (once per leaf with shareNodes, once per path without).
    /// </summary>
    public TreeSummary Walk(ulong root, TreeRole role, LeafVisitor? onLeaf = null)
    {
        var walk = new WalkState(_shareNodes ? null : new HashSet<ulong>());
        return Visit(root, role, isRoot: true, parentKey: null, walk, depth: 0, onLeaf);
    }

    /// <summary>The summary of a node this walker has already walked as <paramref name="role"/>, if any.</summary>
    public TreeSummary? KnownSummary(ulong block, TreeRole role) =>
        _seen.TryGetValue(block, out var info) && info.Role == role ? info.Summary : null;

    private TreeSummary Visit(ulong block, TreeRole role, bool isRoot, ulong? parentKey, WalkState walk, int depth, LeafVisitor? onLeaf)
    {
        _counter?.Inc(block);
        if (_onPath.Contains(block))
        {
            Report(block, $"btree node is referenced from inside its own subtree (a cycle in the {role.Describe()})");
            CutShort = true;
            return TreeSummary.Damaged;
        }
        if (depth > MaxDepth)
        {
            Report(block, $"the {role.Describe()} is deeper than {MaxDepth} levels");
            CutShort = true;
            return TreeSummary.Damaged;
        }
        if (_shareNodes && _seen.TryGetValue(block, out var known))
            return Revisit(block, known, role, isRoot, parentKey, walk);
        // Without sharing, a node reached twice inside one tree is damage; following it again and again
        // could take exponential time on a hostile file.
        if (walk.Visited is not null && !walk.Visited.Add(block))
        {
            Report(block, $"btree node is referenced twice within one {role.Describe()}");
            CutShort = true;
            return TreeSummary.Damaged;
        }

        _onPath.Add(block);
        var info = Inspect(block, role, isRoot, parentKey, walk, depth, onLeaf);
        _onPath.Remove(block);
        if (_shareNodes)
            _seen[block] = info;
        return info.Summary;
    }

    private NodeInfo Inspect(ulong block, TreeRole role, bool isRoot, ulong? parentKey, WalkState walk, int depth, LeafVisitor? onLeaf)
    {
        byte[]? data = block < _limit ? _file.Read(block) : null;
        if (data is null)
        {
            Report(block, $"btree node of the {role.Describe()} lies beyond the end of the metadata device ({_limit} blocks)");
            CutShort = true;
            return NodeInfo.Unreadable(role);
        }
        var node = new BTreeNode(data);
        string? hard = BlockChecksum.Problem(data, block, BlockKind.BTreeNode) ?? BTreeNodeRules.HeaderProblem(data, role.LeafValueSize());
        if (hard is not null)
        {
            Report(block, hard);
            CutShort = true;
            return NodeInfo.Unreadable(role);
        }

        int nr = node.NrEntries, max = node.MaxEntries;
        bool underfull = BTreeNodeRules.IsUnderfull(nr, max, isRoot);
        if (underfull)
            Report(block, BTreeNodeRules.TooFewEntries(nr, max), fatal: true);
        ReportIf(block, BTreeNodeRules.KeyOrderProblem(node));
        if (nr > 0)
            ReportIf(block, BTreeNodeRules.ParentKeyProblem(parentKey, node.Key(0)));

        TreeSummary summary;
        if (node.Flags == BTreeNode.LeafFlag)
        {
            if (nr > 0)
            {
                CheckLeafOrder(block, walk, node.Key(0));
                walk.LastLeafKey = node.Key(nr - 1);
            }
            onLeaf?.Invoke(block, node);
            summary = new TreeSummary(true, (ulong)nr, 0, nr > 0 ? node.Key(0) : null, nr > 0 ? node.Key(nr - 1) : null);
        }
        else
        {
            summary = Descend(block, node, role, walk, depth, onLeaf);
        }
        return new NodeInfo(role, Readable: true, nr, max, nr > 0 ? node.Key(0) : 0, underfull, summary);
    }

    private TreeSummary Descend(ulong block, BTreeNode node, TreeRole role, WalkState walk, int depth, LeafVisitor? onLeaf)
    {
        bool complete = true;
        ulong entries = 0;
        int childHeight = -1;
        bool heightReported = false;
        ulong? lowest = null, highest = null;
        int nr = node.NrEntries;
        for (int i = 0; i < nr; i++)
        {
            var s = Visit(node.Value64(i), role, isRoot: false, parentKey: node.Key(i), walk, depth + 1, onLeaf);
            complete &= s.Complete;
            entries += s.Entries;
            if (s.Height >= 0)
            {
                if (childHeight < 0)
                    childHeight = s.Height;
                else if (s.Height != childHeight && !heightReported)
                {
                    // All leaves of a btree sit at one depth; anything else came from a bad write.
                    Report(block, $"children of this internal node have different heights ({childHeight} and {s.Height})");
                    heightReported = true;
                }
            }
            lowest ??= s.LowestKey;
            highest = s.HighestKey ?? highest;
        }
        return new TreeSummary(complete, entries, childHeight < 0 ? 1 : childHeight + 1, lowest, highest);
    }

    private TreeSummary Revisit(ulong block, NodeInfo known, TreeRole role, bool isRoot, ulong? parentKey, WalkState walk)
    {
        if (known.Role != role)
        {
            Report(block, $"btree node is shared between the {known.Role.Describe()} and the {role.Describe()}");
            CutShort = true;
            return TreeSummary.Damaged;
        }
        if (!known.Readable)
            return TreeSummary.Damaged; // reported on the first visit
        // The node was judged in its first context; only what depends on the new parent is left.
        if (!known.ReportedUnderfull && BTreeNodeRules.IsUnderfull(known.NrEntries, known.MaxEntries, isRoot))
            Report(block, BTreeNodeRules.TooFewEntries(known.NrEntries, known.MaxEntries), fatal: true);
        if (known.NrEntries > 0)
            ReportIf(block, BTreeNodeRules.ParentKeyProblem(parentKey, known.FirstKey));
        if (known.Summary.LowestKey is ulong low)
        {
            CheckLeafOrder(block, walk, low);
            walk.LastLeafKey = known.Summary.HighestKey;
        }
        return known.Summary;
    }

    private void CheckLeafOrder(ulong block, WalkState walk, ulong first)
    {
        ReportIf(block, BTreeNodeRules.LeafOrderProblem(walk.LastLeafKey, first));
    }

    private void ReportIf(ulong block, string? problem)
    {
        if (problem is not null)
            Report(block, problem);
    }

    private void Report(ulong block, string what, bool fatal = true) => _report(CheckProblem.At(block, what, fatal));

    /// <summary>
    /// State of one <see cref="Walk"/>: the last leaf key seen (keys must rise across the leaves of a
    /// tree) and, without node sharing, the nodes already reached in this tree.
    /// </summary>
    private sealed class WalkState
    {
        public WalkState(HashSet<ulong>? visited) => Visited = visited;

        public ulong? LastLeafKey { get; set; }
        public HashSet<ulong>? Visited { get; }
    }

    private sealed record NodeInfo(TreeRole Role, bool Readable, int NrEntries, int MaxEntries, ulong FirstKey,
        bool ReportedUnderfull, TreeSummary Summary)
    {
        public static NodeInfo Unreadable(TreeRole role) => new(role, false, 0, 0, 0, false, TreeSummary.Damaged);
    }
}
