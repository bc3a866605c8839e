using System.Buffers.Binary;

namespace BackupAppliance.Era.Dump;

/// <summary>
/// era_dump 0.9.0: the superblock, every archived writeset bit by bit (ascending era), then the era
/// array. <c>--logical</c> folds the writesets into the era array instead, with 0.9.0's bug kept: a
/// block set in several writesets takes the <b>oldest</b> of their eras (the tool's map insert does not
/// overwrite), and it replaces the array's era only if greater. Output streams; damage found part way
/// ends the dump with an error naming the block, after what was already printed (as the tool does).
/// </summary>
public static class EraDumper
{
    public static void Dump(EraReader reader, IEraVisitor visitor, bool logical)
    {
        var sb = reader.Superblock;
        visitor.BeginSuperblock(new EraSuperblockInfo(sb.UuidText, sb.DataBlockSize, sb.NrBlocks, sb.CurrentEra));
        Dictionary<uint, uint>? oldest = logical ? new() : null;
        reader.VisitWritesets((era, ws) =>
        {
            if (!logical)
                visitor.BeginWriteset(era, ws.NrBits);
            reader.VisitBitset(era, ws, (k, _, values) =>
            {
                ulong wordBase = k * (ulong)EraLayout.WordsPerBitsetBlock;
                for (int i = 0; i * sizeof(ulong) < values.Length; i++)
                {
                    ulong word = BinaryPrimitives.ReadUInt64LittleEndian(values[(i * sizeof(ulong))..]);
                    ulong first = (wordBase + (ulong)i) * 64;
                    for (int b = 0; b < 64 && first + (ulong)b < ws.NrBits; b++)
                    {
                        bool set = (word >> b & 1) != 0;
                        if (oldest is null)
                            visitor.WritesetBit((uint)(first + (ulong)b), set);
                        else if (set)
                            oldest.TryAdd((uint)(first + (ulong)b), era);
                    }
                }
                return true;
            });
            if (!logical)
                visitor.EndWriteset();
            return true;
        });
        visitor.BeginEraArray();
        reader.VisitEraArray((k, _, values) =>
        {
            ulong first = k * (ulong)EraLayout.ErasPerArrayBlock;
            for (int i = 0; i * sizeof(uint) < values.Length; i++)
            {
                uint block = (uint)(first + (ulong)i);
                uint era = BinaryPrimitives.ReadUInt32LittleEndian(values[(i * sizeof(uint))..]);
                if (oldest is not null && oldest.TryGetValue(block, out uint e) && e > era)
                    era = e;
                visitor.Era(block, era);
            }
            return true;
        });
        visitor.EndEraArray();
        visitor.EndSuperblock();
    }
}
