namespace BackupAppliance.Replication.Receiving;

/// <summary>
/// Where a receiver keeps backup points: per (agent, volume) a chain of published, read-only
/// points, and at most one unfinished staging. The protocol engine (<c>BackupReceiver</c>) decodes
/// and verifies frames; the store only writes bytes and makes them durable. Implementations are
/// safe to call for different volumes at once; calls for one volume come one at a time.
/// </summary>
public interface IReplicaStore
{
    /// <summary>Whether this receiver keeps backups of the volume (its configuration allows the agent and volume).</summary>
    bool Keeps(string agent, string volume);

    /// <summary>The volume's published points, oldest first; never a staging.</summary>
    IReadOnlyList<ReplicaPoint> ListPoints(string agent, string volume);

    /// <summary>The durable state of the volume's unfinished staging, or null if there is none.</summary>
    StagingState? FindStaging(string agent, string volume);

    /// <summary>Opens the volume's unfinished staging to continue it (after a restart of either side).</summary>
    ValueTask<IStagedPoint> ResumeStagingAsync(string agent, string volume, CancellationToken cancellationToken);

    /// <summary>
    /// Starts a new staging: a thin snapshot of the base point (or an empty volume for a full
    /// backup) with a copy of the base's block hash table. Any earlier unfinished staging of the
    /// volume is dropped first. Durable when this returns.
    /// </summary>
    ValueTask<IStagedPoint> BeginStagingAsync(StagingRequest request, CancellationToken cancellationToken);
}
