namespace BackupAppliance.Thin.Pool;

/// <summary>A named volume in the catalogue: its thin device and what the metadata does not hold.</summary>
public sealed record VolumeEntry
{
    public required string Name { get; init; }
    public required ulong DeviceId { get; init; }

    /// <summary>Virtual size in bytes (dm-thin keeps it in the device-mapper table, not in the metadata).</summary>
    public required long Size { get; init; }

    /// <summary>Snapshots are exported read-only.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>The volume this one is a snapshot of (informational).</summary>
    public string? SnapshotOf { get; init; }

    /// <summary>External origin: a read-only image that unprovisioned blocks read through to.</summary>
    public string? Origin { get; init; }

    public DateTimeOffset Created { get; init; }

    /// <summary>
    /// For a snapshot taken by a change tracker: the tracker's epoch (dm-era era) that began when the
    /// snapshot was taken. Changes since the snapshot are the blocks written in this epoch or later.
    /// </summary>
    public ulong? ChangeEpoch { get; init; }
}
