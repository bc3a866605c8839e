namespace BackupAppliance.Replication.Receiving;

/// <summary>
/// A published backup point: a full, read-only image of the agent's <see cref="SourceSnapshot"/>,
/// sharing unchanged blocks with the point before it.
/// </summary>
/// <param name="Id">Unique per volume, sortable by time (e.g. <c>20261121T101500Z</c>, with <c>-2</c>… on collision).</param>
/// <param name="BasePoint">The point this was an increment of; null for a full backup.</param>
/// <param name="SourceSnapshot">The agent's snapshot id the offer named as its target.</param>
/// <param name="Stream">The stream that delivered it (a repeated commit gets the same answer).</param>
/// <param name="ChangedBytes">Data bytes received for it (not zero or discard extents).</param>
/// <param name="Digest">The image digest (32 bytes) the agent's commit carried and the table matched.</param>
public sealed record ReplicaPoint(
    string Agent,
    string Volume,
    string Id,
    string? BasePoint,
    string SourceSnapshot,
    ulong Stream,
    DateTimeOffset Created,
    long Size,
    int BlockSize,
    long ChangedBytes,
    byte[] Digest);
