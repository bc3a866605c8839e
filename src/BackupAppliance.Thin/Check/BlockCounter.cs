namespace BackupAppliance.Thin.Check;

/// <summary>
/// Expected reference counts of metadata blocks, built while walking everything that should hold a
/// reference (thin_check's block_counter); dense, since the metadata device has at most 4,161,600
/// blocks. References beyond the counted range are dropped here; whoever follows such a reference
/// reports it.
/// </summary>
public sealed class BlockCounter : IExpectedCounts
{
    private readonly uint[] _counts;

    public BlockCounter(ulong nrBlocks) => _counts = new uint[nrBlocks];

    public ulong NrBlocks => (ulong)_counts.LongLength;

    public void Inc(ulong block)
    {
        if (block < (ulong)_counts.LongLength)
            _counts[block]++;
    }

    public uint Get(ulong block) => block < (ulong)_counts.LongLength ? _counts[block] : 0;

    public int Fill(ulong first, Span<uint> into)
    {
        int nonZero = 0;
        for (int i = 0; i < into.Length; i++)
        {
            into[i] = Get(first + (ulong)i);
            if (into[i] != 0)
                nonZero++;
        }
        return nonZero;
    }
}
