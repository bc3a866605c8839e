namespace BackupAppliance.ChangeTracking;

/// <summary>What <c>bapp vol status</c> shows about a volume's change tracking.</summary>
public sealed record VolumeTrackingStatus(
    string Name,
    ulong DeviceId,
    long Size,
    int BlockSize,
    bool ReadOnly,
    string? EraFile,
    uint? CurrentEra,
    IReadOnlyList<uint> UndigestedEras,
    IReadOnlyList<SnapshotEpoch> Snapshots);

/// <summary>A snapshot of the volume and the era that began when it was taken (null: taken without tracking).</summary>
public sealed record SnapshotEpoch(string Name, ulong DeviceId, DateTimeOffset Created, ulong? Era);
