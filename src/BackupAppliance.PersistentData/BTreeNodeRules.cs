using System.Buffers.Binary;

namespace BackupAppliance.PersistentData;

/// <summary>
/// The rules thin_check and era_check (btree_node_checker) apply to each btree node, as messages in
/// their words; null means the rule holds. Header problems make the node's entries meaningless; the
/// others leave it readable. Shared by the raw-block checkers of every metadata kind.
/// </summary>
public static class BTreeNodeRules
{
    /// <summary>Flags, value size (8 for internal nodes), max_entries fitting the block and divisible by 3, nr_entries.</summary>
    public static string? HeaderProblem(ReadOnlySpan<byte> node, int leafValueSize)
    {
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(node[4..]);
        uint nr = BinaryPrimitives.ReadUInt32LittleEndian(node[16..]);
        uint max = BinaryPrimitives.ReadUInt32LittleEndian(node[20..]);
        uint valueSize = BinaryPrimitives.ReadUInt32LittleEndian(node[24..]);
        if (flags != BTreeNode.InternalFlag && flags != BTreeNode.LeafFlag)
            return $"bad btree node flags {flags} (expected {BTreeNode.InternalFlag} = internal or {BTreeNode.LeafFlag} = leaf)";
        uint expected = flags == BTreeNode.InternalFlag ? 8u : (uint)leafValueSize;
        if (valueSize != expected)
            return $"value size mismatch: expected {expected}, but got {valueSize}";
        if ((8UL + valueSize) * max + BTreeNode.HeaderSize > BlockChecksum.BlockSize)
            return $"max entries too large: {max}";
        if (max % 3 != 0)
            return $"max entries is not divisible by 3: {max}";
        if (nr > max)
            return $"bad nr_entries: {nr} > max_entries {max}";
        return null;
    }

    /// <summary>Every node but a (sub)tree root holds at least max_entries / 3 entries.</summary>
    public static bool IsUnderfull(int nrEntries, int maxEntries, bool isRoot) => !isRoot && nrEntries < maxEntries / 3;

    public static string TooFewEntries(int nrEntries, int maxEntries) =>
        $"too few entries in btree_node: {nrEntries}, expected at least {maxEntries / 3} (max_entries = {maxEntries})";

    /// <summary>Keys strictly increasing inside the node.</summary>
    public static string? KeyOrderProblem(BTreeNode node)
    {
        for (int i = 1; i < node.NrEntries; i++)
            if (node.Key(i) <= node.Key(i - 1))
                return $"keys are out of order, {node.Key(i)} <= {node.Key(i - 1)}";
        return null;
    }

    /// <summary>The parent's key for a child is a lower bound of the child's keys.</summary>
    public static string? ParentKeyProblem(ulong? parentKey, ulong firstKey) =>
        parentKey is ulong pk && pk > firstKey ? $"parent key mismatch: parent was {pk}, but lowest in node was {firstKey}" : null;

    /// <summary>Keys keep increasing from one leaf of a tree to the next.</summary>
    public static string? LeafOrderProblem(ulong? lastLeafKey, ulong firstKey) =>
        lastLeafKey is ulong last && last >= firstKey ? $"the last key of the previous leaf was {last} and the first key of this leaf is {firstKey}" : null;
}
