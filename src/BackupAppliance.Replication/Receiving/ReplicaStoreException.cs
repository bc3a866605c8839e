namespace BackupAppliance.Replication.Receiving;

/// <summary>Why a replica store refused a request, so the protocol engine can answer with the matching error code.</summary>
public enum ReplicaStoreError
{
    /// <summary>The store does not keep this agent's volume, or a name is not a valid token (<c>UnknownVolume</c>).</summary>
    UnknownVolume,
    /// <summary>The base point is missing, or its size or block size differs from the offer's (<c>BaseMismatch</c>).</summary>
    BaseMismatch,
    /// <summary>The volume has no unfinished staging to resume.</summary>
    NoStaging,
    /// <summary>No point with this id (a restore or a lookup).</summary>
    UnknownPoint,
    /// <summary>The request itself is wrong (ranges, sizes, digest length, progress going backwards).</summary>
    InvalidRequest,
}

/// <summary>A request an <see cref="IReplicaStore"/> refused; nothing was changed. The text says what was wrong.</summary>
public sealed class ReplicaStoreException : Exception
{
    public ReplicaStoreException(ReplicaStoreError error, string message, Exception? inner = null)
        : base(message, inner) => Error = error;

    public ReplicaStoreError Error { get; }
}
