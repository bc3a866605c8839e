namespace BackupAppliance.Thin.Check;

/// <summary>
/// The outcome of <see cref="ThinChecker.Check"/>: the stages in the order they ran, each with its
/// problems, plus the facts thin_check prints on stdout.
/// </summary>
public sealed class ThinCheckReport
{
    public ThinCheckReport(IReadOnlyList<ThinCheckStage> stages, ulong? transactionId, ulong? metadataFreeBlocks)
    {
        Stages = stages;
        TransactionId = transactionId;
        MetadataFreeBlocks = metadataFreeBlocks;
    }

    public IReadOnlyList<ThinCheckStage> Stages { get; }

    /// <summary>Transaction id of the superblock that was examined (null when it could not be read).</summary>
    public ulong? TransactionId { get; }

    /// <summary>
    /// Blocks with a zero count in the on-disk metadata space map (null when not computed, e.g. with
    /// <c>-m</c>). Unlike thin_check 0.9.0's figure, which comes from an in-core map.
    /// </summary>
    public ulong? MetadataFreeBlocks { get; }

    public IEnumerable<CheckProblem> Problems => Stages.SelectMany(s => s.Problems);

    /// <summary>True only when nothing at all was found, as thin_check without --ignore-non-fatal-errors.</summary>
    public bool IsValid => !Problems.Any();

    public bool HasFatal => Problems.Any(p => p.Fatal);

    public int ExitCode => IsValid ? 0 : 1;
}
