namespace BackupAppliance.Thin.Pool;

/// <summary>dm-thin pool modes.</summary>
public enum PoolMode
{
    /// <summary>Normal operation.</summary>
    Write,
    /// <summary>Data space is exhausted: writes needing new blocks wait (or fail with error_if_no_space).</summary>
    OutOfDataSpace,
    /// <summary>A metadata failure, metadata space exhausted, or needs_check: no changes until repaired.</summary>
    ReadOnly,
}

/// <summary>What <c>pool status</c> shows.</summary>
public sealed record PoolStatus(
    PoolMode Mode, bool NeedsCheck, ulong TransactionId,
    ulong DataBlocksUsed, ulong DataBlocksTotal, ulong MetadataBlocksUsed, ulong MetadataBlocksTotal,
    int DataBlockSize, bool BelowLowWater, string? ReadOnlyReason, int Volumes);
