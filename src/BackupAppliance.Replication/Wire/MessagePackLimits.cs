namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Bounds a <see cref="MessagePackReader"/> enforces so hostile input cannot make a decoder allocate
/// without bound or recurse deeply. Collection headers are also checked against the bytes left: an
/// array needs at least one byte per element and a map two per entry, so a count can never promise
/// more than the buffer holds.
/// </summary>
public sealed record MessagePackLimits
{
    /// <summary>Limits for replication frames.</summary>
    public static MessagePackLimits Default { get; } = new();

    /// <summary>Deepest nesting of arrays and maps that <see cref="MessagePackReader.Skip"/> follows.</summary>
    public int MaxDepth { get; init; } = 32;

    /// <summary>Longest str, in UTF-8 bytes.</summary>
    public int MaxStringBytes { get; init; } = 64 * 1024;

    /// <summary>Longest bin (the reader returns a slice of its input, never a copy).</summary>
    public int MaxBinaryBytes { get; init; } = 16 * 1024 * 1024;

    /// <summary>Most elements of one array or entries of one map.</summary>
    public int MaxCollectionCount { get; init; } = 1 << 20;
}
