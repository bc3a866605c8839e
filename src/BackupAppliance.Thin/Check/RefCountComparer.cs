using System.Buffers.Binary;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin.Check;

/// <summary>
/// Compares the counts a space map holds on disk (2-bit bitmap entries, 3 = "see the overflow tree")
/// with the counts the walk expects, bitmap by bitmap, in thin_check's words:
/// <c>{kind} reference counts differ for block N, expected X, but got Y</c>.
/// A count lower than expected is fatal (the block could be reused while still in use); a higher one
/// is a leak (non-fatal). When the walk was cut short by damage the expected counts are only lower
/// bounds, so excess counts are summed up in one message instead of being listed as leaks.
/// </summary>
public sealed class RefCountComparer
{
    /// <summary>How many unexplained blocks a summary message lists by number.</summary>
    public const int ListedInSummary = 20;

    private readonly RawMetadataFile _file;
    private readonly Action<CheckProblem> _report;

    public RefCountComparer(RawMetadataFile file, Action<CheckProblem> report)
    {
        _file = file;
        _report = report;
    }

    /// <summary>Runs the comparison; returns the number of blocks with count 0, or null if some range was unreadable.</summary>
    public ulong? Compare(SpaceMapLayout sm, IExpectedCounts expected, bool expectedComplete)
    {
        const int perBitmap = SpaceMapBitmap.EntriesPerBlock;
        var want = new uint[perBitmap];
        var seenOverflow = new HashSet<ulong>();
        var readBitmaps = new HashSet<ulong>();
        var excess = new List<ulong>();
        ulong excessCount = 0;
        ulong free = 0;
        bool allKnown = (ulong)sm.Bitmaps.Count == sm.NrBitmaps;

        foreach (var (index, location) in sm.Bitmaps)
        {
            ulong first = index * perBitmap;
            int entries = (int)Math.Min(perBitmap, sm.NrBlocks - first);
            byte[]? bitmap = _file.Read(location);
            string? problem = bitmap is null
                ? "space map bitmap lies beyond the end of the metadata device"
                : BlockChecksum.Problem(bitmap, location, BlockKind.Bitmap);
            if (problem is not null || bitmap is null)
            {
                _report(CheckProblem.At(location, $"{problem} ({sm.Kind} space map bitmap {index}: counts of blocks {first}..{first + (ulong)entries - 1} unknown)"));
                allKnown = false;
                continue;
            }
            readBitmaps.Add(index);
            int wanted = expected.Fill(first, want.AsSpan(0, entries));
            for (int e = 0; e < entries; e++)
            {
                // Fast path for sparse data maps: nothing on disk and nothing expected.
                if (wanted == 0 && (e & 31) == 0 && e + 32 <= entries && WordIsZero(bitmap, e))
                {
                    free += 32;
                    e += 31;
                    continue;
                }
                ulong block = first + (ulong)e;
                uint raw = SpaceMapBitmap.Get(bitmap, e);
                uint actual = raw;
                if (raw == 3)
                {
                    if (sm.Overflow.TryGetValue(block, out uint big))
                    {
                        seenOverflow.Add(block);
                        actual = big;
                        if (big < 3)
                            _report(CheckProblem.At(location, $"{sm.Kind} block {block} has count {big} in the ref count tree, but counts below 3 belong in the bitmap", fatal: false));
                    }
                    else
                    {
                        if (sm.OverflowComplete)
                            _report(CheckProblem.At(location, $"bitmap entry of {sm.Kind} block {block} says its count is in the ref count tree, but the tree has no entry for it"));
                        allKnown = false;
                        continue;
                    }
                }
                if (actual == 0)
                    free++;
                uint exp = want[e];
                if (actual == exp)
                    continue;
                if (actual < exp || expectedComplete)
                {
                    _report(new CheckProblem(block,
                        $"{sm.Kind} reference counts differ for block {block}, expected {exp}, but got {actual}",
                        Fatal: actual < exp));
                }
                else
                {
                    excessCount++;
                    if (excess.Count < ListedInSummary)
                        excess.Add(block);
                }
            }
        }

        foreach (var (block, count) in sm.Overflow)
        {
            if (block >= sm.NrBlocks)
                _report(new CheckProblem(block, $"{sm.Kind} space map ref count tree holds count {count} for block {block}, beyond its {sm.NrBlocks} blocks", Fatal: false));
            else if (!seenOverflow.Contains(block) && readBitmaps.Contains(block / perBitmap))
                _report(new CheckProblem(block, $"{sm.Kind} space map ref count tree holds count {count} for block {block}, but its bitmap entry is not 3, so the entry is ignored", Fatal: false));
        }

        if (excessCount > 0)
        {
            _report(new CheckProblem(excess[0],
                $"{excessCount} {sm.Kind} blocks have higher counts than the references found, probably because the damage reported above hid them: "
                + string.Join(", ", excess) + (excessCount > (ulong)excess.Count ? ", ..." : ""),
                Fatal: false));
        }
        return allKnown ? free : null;
    }

    private static bool WordIsZero(byte[] bitmap, int entry) =>
        BinaryPrimitives.ReadUInt64LittleEndian(bitmap.AsSpan(SpaceMapBitmap.HeaderSize + 8 * (entry >> 5))) == 0;
}
