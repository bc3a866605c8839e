using System.Buffers.Binary;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Era.Check;

/// <summary>
/// Walks btrees and dm-arrays straight from raw blocks and judges every node and array block the way
/// era_check's btree and array visitors do (checksum and self-location, flags, value size, max_entries
/// fitting the block and divisible by 3, nr_entries, the one-third minimum for non-root nodes, key
/// order inside a node, against the parent and across leaves; array blocks 0, 1, 2, … full but the
/// last, the expected number of entries). A node whose header is unusable stops the walk below it;
/// other problems are reported and the walk goes on. Every problem names its block.
/// </summary>
internal sealed class RawEraWalker
{
    private const int MaxDepth = 16;

    private readonly BlockManager _bm;
    private readonly Action<string> _report;
    private readonly HashSet<ulong> _btreeNodes = new();

    public RawEraWalker(BlockManager bm, Action<string> report)
    {
        _bm = bm;
        _report = report;
    }

    /// <summary>Calls <paramref name="leaf"/> for every entry of the tree's readable leaves, in key order. False if damage cut the walk short.</summary>
    public bool WalkBTree(ulong root, int leafValueSize, string what, Action<ulong, ReadOnlySpan<byte>> leaf)
    {
        ulong? lastLeafKey = null;
        return Visit(root, leafValueSize, what, isRoot: true, parentKey: null, depth: 0, ref lastLeafKey, leaf);
    }

    private bool Visit(ulong block, int leafValueSize, string what, bool isRoot, ulong? parentKey, int depth, ref ulong? lastLeafKey, Action<ulong, ReadOnlySpan<byte>> leaf)
    {
        if (depth > MaxDepth)
            return Report(block, $"the {what} is deeper than {MaxDepth} levels");
        if (!_btreeNodes.Add(block))
            return Report(block, $"btree node of the {what} is reached a second time (nodes are not shared inside live era metadata)");
        var data = ReadBlock(block, $"btree node of the {what}");
        if (data is null)
            return false;
        var node = new BTreeNode(data);
        string? hard = BlockChecksum.Problem(data, block, BlockKind.BTreeNode) ?? BTreeNodeRules.HeaderProblem(data, leafValueSize);
        if (hard is not null)
            return Report(block, $"{what}: {hard}");

        int nr = node.NrEntries, max = node.MaxEntries;
        if (BTreeNodeRules.IsUnderfull(nr, max, isRoot))
            Report(block, $"{what}: {BTreeNodeRules.TooFewEntries(nr, max)}");
        ReportIf(block, what, BTreeNodeRules.KeyOrderProblem(node));
        if (nr > 0)
            ReportIf(block, what, BTreeNodeRules.ParentKeyProblem(parentKey, node.Key(0)));

        if (node.IsLeaf)
        {
            if (nr > 0)
            {
                ReportIf(block, what, BTreeNodeRules.LeafOrderProblem(lastLeafKey, node.Key(0)));
                lastLeafKey = node.Key(nr - 1);
            }
            for (int i = 0; i < nr; i++)
                leaf(node.Key(i), node.Value(i));
            return true;
        }
        bool complete = true;
        for (int i = 0; i < nr; i++)
            complete &= Visit(node.Value64(i), leafValueSize, what, isRoot: false, node.Key(i), depth + 1, ref lastLeafKey, leaf);
        return complete;
    }

    /// <summary>
    /// Calls <paramref name="visit"/>(first index, location, values) for each readable array block of the array at
    /// <paramref name="root"/>, which must hold <paramref name="expectedEntries"/> values of <paramref name="valueSize"/> bytes.
    /// </summary>
    public void WalkArray(ulong root, int valueSize, ulong expectedEntries, string what, Action<ulong, ulong, ReadOnlySpan<byte>> visit)
    {
        int perBlock = ArrayTree.CalcMaxEntries(valueSize);
        var blocks = new List<(ulong Key, ulong Location)>();
        bool complete = WalkBTree(root, sizeof(ulong), $"{what} btree", (k, v) => blocks.Add((k, BinaryPrimitives.ReadUInt64LittleEndian(v))));
        ulong entries = 0;
        ulong? partial = null;
        for (int i = 0; i < blocks.Count; i++)
        {
            var (key, loc) = blocks[i];
            if (key != (ulong)i)
            {
                Report(loc, $"{what}: array block {key} found where block {i} was expected (missing blocks)");
                return;
            }
            if (partial is ulong p)
                Report(p, $"{what}: array block {i - 1} is not full but is not the last");
            partial = null;
            var data = ReadBlock(loc, $"array block {key} of the {what}");
            if (data is null)
                return;
            string? problem = BlockChecksum.Problem(data, loc, BlockKind.ArrayBlock) ?? ArrayHeaderProblem(data, valueSize, perBlock);
            if (problem is not null)
            {
                Report(loc, $"{what}: {problem}");
                return;
            }
            int nr = (int)BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(8));
            if (nr < perBlock)
                partial = loc;
            visit(key * (ulong)perBlock, loc, data.AsSpan(ArrayTree.HeaderSize, nr * valueSize));
            entries += (ulong)nr;
        }
        if (complete && entries != expectedEntries)
            Report(root, $"{what} holds {entries} entries, expected {expectedEntries} (missing blocks)");
    }

    private byte[]? ReadBlock(ulong block, string what)
    {
        if (block >= _bm.NrBlocks)
        {
            Report(block, $"{what} lies beyond the end of the metadata file ({_bm.NrBlocks} blocks)");
            return null;
        }
        var data = new byte[BlockChecksum.BlockSize];
        _bm.ReadRaw(block, data);
        return data;
    }

    private static string? ArrayHeaderProblem(byte[] data, int valueSize, int perBlock)
    {
        uint max = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(4));
        uint nr = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(8));
        uint vs = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(12));
        if (vs != valueSize)
            return $"array block has value_size {vs}, expected {valueSize}";
        if (max != perBlock)
            return $"array block has max_entries {max}, expected {perBlock}";
        if (nr == 0 || nr > max)
            return $"array block has nr_entries {nr} (1..{max} allowed)";
        return null;
    }

    private void ReportIf(ulong block, string what, string? problem)
    {
        if (problem is not null)
            Report(block, $"{what}: {problem}");
    }

    private bool Report(ulong block, string what)
    {
        _report($"block {block}: {what}");
        return false;
    }
}
