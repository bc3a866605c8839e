namespace BackupAppliance.Agent;

/// <summary>
/// What the agent remembers about one protected volume: the base of its next backup (the receiver's
/// point, the era it was taken at, the block hash table of that image) and the backup under way,
/// if any, so that after a restart it offers the same snapshot again and the receiver resumes.
/// </summary>
public sealed record VolumeBackupState
{
    /// <summary>The volume's thin device id; a volume deleted and made again under the same name starts over with a full backup.</summary>
    public ulong DeviceId { get; init; }
    /// <summary>The receiver's newest point of this volume, as its commit acknowledged; null before the first backup.</summary>
    public string? BasePoint { get; init; }
    /// <summary>The era the base snapshot was taken at: blocks written in this era or later changed since.</summary>
    public uint? BaseEra { get; init; }
    public long BaseSize { get; init; }
    public int BaseBlockSize { get; init; }
    /// <summary>The base image's block hash table, a file in the state folder.</summary>
    public string? BaseHashes { get; init; }
    public DateTimeOffset? BaseTime { get; init; }
    public PendingBackup? Pending { get; init; }
}

/// <summary>A backup that was started and not yet acknowledged as committed.</summary>
/// <param name="Snapshot">The agent's snapshot being sent (also the offer's target).</param>
/// <param name="Era">The era the snapshot was taken at (the next base era).</param>
/// <param name="BasePoint">The base it was offered against; null for a full backup.</param>
public sealed record PendingBackup(string Snapshot, uint? Era, string? BasePoint, DateTimeOffset Started);
