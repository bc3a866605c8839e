namespace BackupAppliance.Thin.Pool;

/// <summary>
/// A pool's own settings, kept in <c>pool.json</c> beside the metadata. The data block size is also
/// in the metadata superblock; the two must agree.
/// </summary>
public sealed record PoolSettings
{
    public const string FileName = "pool.json";

    /// <summary>Data block size in bytes (64 KiB … 1 GiB, a multiple of 64 KiB).</summary>
    public int DataBlockSize { get; init; } = 64 * 1024;

    /// <summary>dm-thin's error_if_no_space: fail writes at once when data space runs out.</summary>
    public bool ErrorIfNoSpace { get; init; }

    /// <summary>Without <see cref="ErrorIfNoSpace"/>: how long a write waits for space (a resize) before failing.</summary>
    public double NoSpaceTimeoutSeconds { get; init; } = 60;

    /// <summary>Below this percentage of free data blocks the pool warns (low-water mark).</summary>
    public double LowWaterPercent { get; init; } = 10;
}
