namespace BackupAppliance.Thin.Check;

/// <summary>
/// What a walk learned about a (sub)tree. <see cref="Complete"/> is false when some node below could
/// not be interpreted (bad checksum, wrong location, ...): <see cref="Entries"/> is then a lower bound
/// and nothing below that node was counted. Lowest/highest are the extreme leaf keys (null if empty).
/// </summary>
public readonly record struct TreeSummary(bool Complete, ulong Entries, int Height, ulong? LowestKey, ulong? HighestKey)
{
    public static readonly TreeSummary Damaged = new(false, 0, -1, null, null);
}
