namespace BackupAppliance.Core;

/// <summary>
/// A range of a volume's bytes, one of several a gathered read or write covers: their bytes lie one
/// after the other in the caller's buffer, in list order.
/// </summary>
public readonly record struct VolumeRange(long Offset, int Length)
{
    public long End => Offset + Length;

    /// <summary>The bytes all of <paramref name="ranges"/> cover together.</summary>
    public static long TotalLength(IReadOnlyList<VolumeRange> ranges)
    {
        long total = 0;
        for (int i = 0; i < ranges.Count; i++)
            total += ranges[i].Length;
        return total;
    }
}
