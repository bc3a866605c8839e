namespace BackupAppliance.Core;

/// <summary>
/// On-disk metadata failed validation. Names the block and what was wrong so that an operator
/// (and <c>bapp thin check</c>) can report it; nothing is returned from a block that failed.
/// </summary>
public sealed class CorruptMetadataException : Exception
{
    public CorruptMetadataException(ulong block, string problem)
        : base($"block {block}: {problem}")
    {
        Block = block;
        Problem = problem;
    }

    public ulong Block { get; }
    public string Problem { get; }
}
