namespace BackupAppliance.Era.Check;

/// <summary>What <see cref="EraChecker"/> found: each problem is one line naming the block; none means the file passed.</summary>
public sealed record EraCheckReport(IReadOnlyList<string> Problems)
{
    public bool Passed => Problems.Count == 0;
}
