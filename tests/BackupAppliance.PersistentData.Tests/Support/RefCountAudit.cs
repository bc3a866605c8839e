using System.Buffers.Binary;

namespace BackupAppliance.PersistentData.Tests.Support;

/// <summary>
/// Recomputes every metadata block's reference count from what is reachable on disk (superblock slot,
/// space-map index, bitmaps and overflow tree, user trees) and compares it with the space map: a block
/// nobody references must be free, a node shared by two parents must count 2.
/// </summary>
public sealed class RefCountAudit
{
    private readonly Dictionary<ulong, uint> _refs = new();
    private readonly HashSet<ulong> _walked = new();

    public void Reference(ulong block) => _refs[block] = _refs.GetValueOrDefault(block) + 1;

    /// <summary>One reference to <paramref name="root"/>; each distinct node references its children (and, for array btrees, its array blocks) once.</summary>
    public void AddTree(MetadataHarness h, ulong root, bool valuesAreBlocks = false)
    {
        Reference(root);
        Descend(h, root, valuesAreBlocks);
    }

    /// <summary>Block 0 and everything the committed metadata space map root names.</summary>
    public void AddMetadataSpaceMap(MetadataHarness h)
    {
        var root = h.SmRoot;
        Reference(0);
        Reference(root.BitmapRoot);
        var index = h.ReadRaw(root.BitmapRoot);
        Assert.Null(BlockChecksum.Problem(index, root.BitmapRoot, BlockKind.MetadataIndex));
        for (int i = 0; i < SpaceMap.NrBitmaps(root.NrBlocks); i++)
            Reference(IndexEntry.Read(index.AsSpan(16 + IndexEntry.Size * i)).BlockNr);
        AddTree(h, root.RefCountRoot);
    }

    public void Verify(SpaceMap sm, string context)
    {
        var wrong = new List<string>();
        for (ulong b = 0; b < sm.NrBlocks; b++)
        {
            uint want = _refs.GetValueOrDefault(b);
            uint got = sm.Count(b);
            if (want != got)
                wrong.Add($"block {b}: count {got}, referenced {want} times");
        }
        Assert.True(wrong.Count == 0, $"{context}: {wrong.Count} wrong counts, e.g. {string.Join("; ", wrong.Take(8))}");
        Assert.Equal((ulong)_refs.Count, sm.NrAllocated);
    }

    private void Descend(MetadataHarness h, ulong loc, bool valuesAreBlocks)
    {
        if (!_walked.Add(loc))
            return; // a shared node: its children were counted when it was first reached
        var d = h.ReadRaw(loc);
        Assert.Null(BlockChecksum.Problem(d, loc, BlockKind.BTreeNode));
        uint flags = BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(4));
        int nr = (int)BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(16));
        int max = (int)BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(20));
        int valuesAt = 32 + 8 * max;
        bool internalNode = flags == 1;
        if (!internalNode && !valuesAreBlocks)
            return;
        for (int i = 0; i < nr; i++)
        {
            ulong child = BinaryPrimitives.ReadUInt64LittleEndian(d.AsSpan(valuesAt + 8 * i));
            Reference(child);
            if (internalNode)
                Descend(h, child, valuesAreBlocks);
        }
    }
}
