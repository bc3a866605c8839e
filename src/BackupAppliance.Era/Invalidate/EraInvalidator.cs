using System.Buffers.Binary;

namespace BackupAppliance.Era.Invalidate;

/// <summary>
/// era_invalidate 0.9.0: the blocks b &lt; nr_blocks whose era-array entry is ≥ the threshold, plus every
/// bit set in an archived writeset whose era is ≥ the threshold (up to that writeset's nr_bits, even
/// past nr_blocks). The superblock's current writeset is ignored. With <c>--metadata-snapshot</c> 0.9.0
/// only requires metadata_snap ≠ 0 and then reads the <b>live</b> trees anyway; that is kept. Every
/// writeset is walked, also those below the threshold, so damage anywhere fails the run as in the tool.
/// </summary>
public static class EraInvalidator
{
    public static BlockSet WrittenSince(EraReader reader, uint threshold, bool metadataSnapshot)
    {
        var sb = reader.Superblock;
        if (metadataSnapshot && sb.MetadataSnap == 0)
            throw new InvalidOperationException("no metadata snapshot taken.");
        var set = new BlockSet();
        uint nrBlocks = sb.NrBlocks;
        var below = new HashSet<ulong>(); // era-array blocks (by location) with every era < threshold
        reader.VisitEraArrayPrefix((k, loc, values) =>
        {
            uint first = (uint)(k * (ulong)EraLayout.ErasPerArrayBlock);
            int nr = (int)Math.Min((ulong)(values.Length / sizeof(uint)), nrBlocks - first);
            if (threshold == 0)
            {
                set.AddRange(first, first + (uint)nr); // every era is ≥ 0
                return true;
            }
            if (below.Contains(loc))
                return true;
            bool any = false;
            for (int i = 0; i < nr; i++)
            {
                if (BinaryPrimitives.ReadUInt32LittleEndian(values[(i * sizeof(uint))..]) >= threshold)
                {
                    set.Add(first + (uint)i);
                    any = true;
                }
            }
            if (!any && nr == values.Length / sizeof(uint))
                below.Add(loc);
            return true;
        });
        reader.VisitWritesets((era, ws) =>
        {
            bool wanted = era >= threshold;
            ulong words = PersistentData.Bitset.WordsFor(ws.NrBits);
            reader.VisitBitset(era, ws, (k, _, values) =>
            {
                if (!wanted)
                    return true;
                ulong wordBase = k * (ulong)EraLayout.WordsPerBitsetBlock;
                for (int i = 0; i * sizeof(ulong) < values.Length; i++)
                {
                    ulong w = BinaryPrimitives.ReadUInt64LittleEndian(values[(i * sizeof(ulong))..]);
                    ulong index = wordBase + (ulong)i;
                    if (index == words - 1 && ws.NrBits % 64 != 0)
                        w &= (1UL << (int)(ws.NrBits % 64)) - 1;
                    set.AddWord((uint)index, w);
                }
                return true;
            });
            return true;
        });
        return set;
    }

    /// <summary>
    /// The tool's output: maximal runs, a single block as <c>&lt;block block="N"/&gt;</c>, longer runs as
    /// <c>&lt;range begin="B" end = "E"/&gt;</c> (E exclusive, with its odd spacing).
    /// </summary>
    public static void Emit(BlockSet blocks, TextWriter output)
    {
        output.Write("<blocks>\n");
        blocks.EmitRuns((first, end) =>
        {
            if (end - first == 1)
                output.Write($"  <block block=\"{first}\"/>\n");
            else
                output.Write($"  <range begin=\"{first}\" end = \"{end}\"/>\n");
        });
        output.Write("</blocks>\n");
    }
}
