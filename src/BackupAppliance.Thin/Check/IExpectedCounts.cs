namespace BackupAppliance.Thin.Check;

/// <summary>Expected reference counts, handed out one bitmap's range at a time for comparison with the disk.</summary>
public interface IExpectedCounts
{
    /// <summary>Writes the expected counts of blocks [first, first + into.Length) and returns how many are non-zero.</summary>
    int Fill(ulong first, Span<uint> into);
}
