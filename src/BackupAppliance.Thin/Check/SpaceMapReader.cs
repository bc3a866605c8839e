using System.Buffers.Binary;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin.Check;

/// <summary>
/// Reads the structure of the two space maps from raw blocks (dm-space-map-metadata's index block,
/// dm-space-map-disk's index btree, and their overflow ref-count trees) and counts every block they
/// occupy as an expected metadata reference. The bitmaps themselves are read later, when counts are
/// compared.
/// </summary>
public sealed class SpaceMapReader
{
    /// <summary>255 index entries fill the metadata index block exactly (DM_SM_METADATA_MAX_BLOCKS).</summary>
    public const int MaxMetadataBitmaps = 255;

    private readonly RawMetadataFile _file;
    private readonly ulong _limit;
    private readonly RawBTreeWalker _walker;
    private readonly BlockCounter _counter;
    private readonly Action<CheckProblem> _report;

    public SpaceMapReader(RawMetadataFile file, ulong limit, RawBTreeWalker walker, BlockCounter counter, Action<CheckProblem> report)
    {
        _file = file;
        _limit = limit;
        _walker = walker;
        _counter = counter;
        _report = report;
    }

    /// <summary>True once some space-map block could not be read, so expected counts are lower bounds.</summary>
    public bool CutShort { get; private set; }

    /// <summary>The metadata space map: one index block of up to 255 disk_index_entry.</summary>
    public SpaceMapLayout ReadMetadata(SpaceMapRoot root)
    {
        var bitmaps = new List<BitmapLocation>();
        // Blocks past the device can be neither referenced nor compared (a bigger nr_blocks is reported
        // with the superblock), so the map is judged over the blocks that exist.
        ulong nrBlocks = Math.Min(root.NrBlocks, _limit);
        ulong needed = Math.Min(SpaceMapLayout.NrBitmapsFor(nrBlocks), MaxMetadataBitmaps);
        ulong indexBlock = root.BitmapRoot;
        _counter.Inc(indexBlock);
        byte[]? index = indexBlock < _limit ? _file.Read(indexBlock) : null;
        if (index is null)
        {
            _report(CheckProblem.At(indexBlock, $"metadata space map index block lies beyond the end of the metadata device ({_limit} blocks)"));
            CutShort = true;
        }
        else if (BlockChecksum.Problem(index, indexBlock, BlockKind.MetadataIndex) is string problem)
        {
            _report(CheckProblem.At(indexBlock, problem));
            CutShort = true;
        }
        else
        {
            for (ulong i = 0; i < needed; i++)
            {
                var ie = IndexEntry.Read(index.AsSpan(16 + IndexEntry.Size * (int)i));
                if (ie.BlockNr == 0 || ie.BlockNr >= _limit)
                {
                    _report(CheckProblem.At(indexBlock, $"metadata space map index entry {i} points to block {ie.BlockNr}, which is not a usable metadata block"));
                    CutShort = true;
                    continue;
                }
                _counter.Inc(ie.BlockNr);
                bitmaps.Add(new BitmapLocation(i, ie.BlockNr));
            }
        }
        var (overflow, complete) = ReadOverflow(root.RefCountRoot, TreeRole.MetadataRefCounts);
        return new SpaceMapLayout("metadata", Math.Min(nrBlocks, needed * (ulong)SpaceMapBitmap.EntriesPerBlock), bitmaps, overflow, complete);
    }

    /// <summary>The data space map: an index btree keyed by bitmap number, fully populated.</summary>
    public SpaceMapLayout ReadData(SpaceMapRoot root)
    {
        ulong needed = SpaceMapLayout.NrBitmapsFor(root.NrBlocks);
        var found = new SortedDictionary<ulong, ulong>();
        _walker.Walk(root.BitmapRoot, TreeRole.DataSpaceMapIndex, (leafBlock, leaf) =>
        {
            for (int i = 0; i < leaf.NrEntries; i++)
            {
                ulong key = leaf.Key(i);
                var ie = IndexEntry.Read(leaf.Value(i));
                if (ie.BlockNr == 0 || ie.BlockNr >= _limit)
                {
                    _report(CheckProblem.At(leafBlock, $"data space map index entry {key} points to block {ie.BlockNr}, which is not a usable metadata block"));
                    CutShort = true;
                    continue;
                }
                _counter.Inc(ie.BlockNr);
                if (key >= needed)
                {
                    _report(CheckProblem.At(leafBlock, $"data space map index has an entry for bitmap {key}, but {root.NrBlocks} data blocks need only {needed} bitmaps", fatal: false));
                    continue;
                }
                found[key] = ie.BlockNr;
            }
        });
        if ((ulong)found.Count < needed)
        {
            ulong firstMissing = 0;
            while (found.ContainsKey(firstMissing))
                firstMissing++;
            _report(CheckProblem.At(root.BitmapRoot,
                $"data space map index lacks {needed - (ulong)found.Count} of the {needed} bitmaps its {root.NrBlocks} data blocks need (first missing: {firstMissing})"));
        }
        var bitmaps = found.Select(kv => new BitmapLocation(kv.Key, kv.Value)).ToList();
        var (overflow, complete) = ReadOverflow(root.RefCountRoot, TreeRole.DataRefCounts);
        return new SpaceMapLayout("data", root.NrBlocks, bitmaps, overflow, complete);
    }

    private (Dictionary<ulong, uint> Counts, bool Complete) ReadOverflow(ulong root, TreeRole role)
    {
        var counts = new Dictionary<ulong, uint>();
        var summary = _walker.Walk(root, role, (_, leaf) =>
        {
            for (int i = 0; i < leaf.NrEntries; i++)
                counts[leaf.Key(i)] = BinaryPrimitives.ReadUInt32LittleEndian(leaf.Value(i));
        });
        return (counts, summary.Complete);
    }
}
