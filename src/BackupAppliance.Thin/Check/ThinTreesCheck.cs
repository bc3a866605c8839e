using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin.Check;

/// <summary>
/// Checks the two trees one thin superblock points at (live, or a metadata-snapshot copy): the device
/// details tree and the 2-level mapping tree, their agreement with each other, every device's
/// mapped_blocks, and that data blocks lie inside the data device. Counts each distinct mapping leaf's
/// data blocks toward the expected data reference counts (dm-thin-metadata.c: a leaf shared by two
/// devices or by the live and the snapshot trees holds one reference per value).
/// </summary>
public sealed class ThinTreesCheck
{
    private readonly RawBTreeWalker _walker;
    private readonly RawBTreeWalker _enumerator;
    private readonly DataBlockCounter? _dataCounts;
    private readonly ulong? _dataNrBlocks;
    private readonly Action<CheckProblem> _report;

    /// <param name="walker">Checking walker (shares nodes, counts references).</param>
    /// <param name="enumerator">Plain walker that lists every entry of a tree even where its nodes are shared.</param>
    /// <param name="dataCounts">Expected data counts to add to, or null when data counts are not checked.</param>
    /// <param name="dataNrBlocks">Size of the data device, or null when unknown.</param>
    public ThinTreesCheck(RawBTreeWalker walker, RawBTreeWalker enumerator, DataBlockCounter? dataCounts,
        ulong? dataNrBlocks, Action<CheckProblem> report)
    {
        _walker = walker;
        _enumerator = enumerator;
        _dataCounts = dataCounts;
        _dataNrBlocks = dataNrBlocks;
        _report = report;
    }

    /// <summary>A device's details and the details-tree leaf that holds them.</summary>
    public readonly record struct DetailsEntry(DeviceDetails Details, ulong Leaf);

    public SortedDictionary<ulong, DetailsEntry> CheckDetails(ulong root)
    {
        _walker.Walk(root, TreeRole.DeviceDetails);
        var devices = new SortedDictionary<ulong, DetailsEntry>();
        _enumerator.Walk(root, TreeRole.DeviceDetails, (leafBlock, leaf) =>
        {
            for (int i = 0; i < leaf.NrEntries; i++)
                devices[leaf.Key(i)] = new DetailsEntry(DeviceDetails.Read(leaf.Value(i)), leafBlock);
        });
        return devices;
    }

    /// <param name="where">Appended to messages about devices, to tell the snapshot's from the live ones.</param>
    public void CheckMappings(ulong root, IReadOnlyDictionary<ulong, DetailsEntry> details, string where)
    {
        // Sub-tree roots are walked from the top-level leaves the checking walker reaches for the first
        // time, so a top-level leaf shared with the metadata snapshot adds its references only once.
        _walker.Walk(root, TreeRole.MappingTop, (_, leaf) =>
        {
            for (int i = 0; i < leaf.NrEntries; i++)
                _walker.Walk(leaf.Value64(i), TreeRole.MappingBottom, CountDataBlocks);
        });
        var roots = new SortedDictionary<ulong, (ulong Root, ulong Leaf)>();
        _enumerator.Walk(root, TreeRole.MappingTop, (leafBlock, leaf) =>
        {
            for (int i = 0; i < leaf.NrEntries; i++)
                roots[leaf.Key(i)] = (leaf.Value64(i), leafBlock);
        });

        foreach (var (dev, (devRoot, topLeaf)) in roots)
        {
            var summary = _walker.KnownSummary(devRoot, TreeRole.MappingBottom) ?? TreeSummary.Damaged;
            if (!details.TryGetValue(dev, out var d))
            {
                _report(CheckProblem.At(topLeaf, $"thin device {dev} has a mapping tree but no entry in the device details tree{where}"));
                continue;
            }
            // Only a fully read tree gives a count worth comparing; damage below was reported already.
            if (summary.Complete && summary.Entries != d.Details.MappedBlocks)
            {
                _report(CheckProblem.At(d.Leaf,
                    $"thin device {dev} has mapped_blocks {d.Details.MappedBlocks} in the device details tree, but its mapping tree holds {summary.Entries} mappings{where}",
                    fatal: false));
            }
        }
        foreach (var (dev, d) in details)
        {
            if (!roots.ContainsKey(dev))
                _report(CheckProblem.At(d.Leaf, $"thin device {dev} is in the device details tree but has no mapping tree{where}"));
        }
    }

    private void CountDataBlocks(ulong leafBlock, BTreeNode leaf)
    {
        for (int i = 0; i < leaf.NrEntries; i++)
        {
            var bt = BlockTime.Unpack(leaf.Value64(i));
            if (_dataNrBlocks is ulong nr && bt.DataBlock >= nr)
            {
                _report(CheckProblem.At(leafBlock,
                    $"virtual block {leaf.Key(i)} maps to data block {bt.DataBlock}, beyond the end of the data device ({nr} blocks)"));
                continue;
            }
            _dataCounts?.Inc(bt.DataBlock);
        }
    }
}
