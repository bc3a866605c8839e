namespace BackupAppliance.Thin.Check;

/// <summary>
/// One thing the checker found wrong. <see cref="Message"/> is the full line as printed (it names the
/// block); <see cref="Fatal"/> follows thin_check's split: a fatal problem can lose data (a count too
/// low, a damaged node), a non-fatal one only wastes space or misreports (a leaked block).
/// Either kind makes the check fail.
/// </summary>
public sealed record CheckProblem(ulong? Block, string Message, bool Fatal)
{
    /// <summary>A problem located at a block, printed as <c>block N: what</c>.</summary>
    public static CheckProblem At(ulong block, string what, bool fatal = true) => new(block, $"block {block}: {what}", fatal);

    public override string ToString() => Message;
}
