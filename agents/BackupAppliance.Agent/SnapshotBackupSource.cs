using BackupAppliance.ChangeTracking;
using BackupAppliance.Core;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Sending;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Agent;

/// <summary>
/// One backup of a volume as the sender sees it: the agent's frozen snapshot, the ranges changed
/// since the base (all of the snapshot for a full backup), and the target's hash table, begun as a
/// copy of the base's. Mapped ranges are read and sent; unmapped ones become discards.
/// </summary>
public sealed class SnapshotBackupSource : IBackupSource, IDisposable
{
    private readonly IBlockVolume _snapshot;

    private SnapshotBackupSource(string agent, string volume, IBlockVolume snapshot, string? basePoint, IReadOnlyList<SourceRange> ranges, BlockHashTable hashes)
    {
        Agent = agent;
        Volume = volume;
        _snapshot = snapshot;
        BasePoint = basePoint;
        Ranges = ranges;
        Hashes = hashes;
    }

    public string Agent { get; }
    public string Volume { get; }
    public long Size => _snapshot.Size;
    /// <summary>The pool's block size, capped at the protocol's largest replication block.</summary>
    public int BlockSize => ReplicationBlockSize(_snapshot);
    public string? BasePoint { get; }
    public string Target => _snapshot.Name;
    public IReadOnlyList<SourceRange> Ranges { get; }
    public BlockHashTable Hashes { get; }

    /// <summary>Bytes of every changed range.</summary>
    public long ChangedBytes => Ranges.Sum(r => r.Length);

    /// <summary>
    /// Prepares a backup of <paramref name="snapshotName"/>: for an increment, the blocks written in
    /// <paramref name="baseEra"/> or later up to the snapshot; for a full backup (no base), its whole
    /// allocation. <paramref name="hashesPath"/> is created from <paramref name="baseHashes"/>.
    /// </summary>
    public static async Task<SnapshotBackupSource> PrepareAsync(
        TrackedPool pool, string agent, string volume, string snapshotName, string? basePoint, uint? baseEra,
        BlockHashTable? baseHashes, string hashesPath, CancellationToken cancellationToken)
    {
        var snapshot = pool.OpenVolume(snapshotName);
        long size = snapshot.Size;
        var ranges = new List<SourceRange>();
        if (basePoint is null)
        {
            foreach (var e in await snapshot.GetAllocationAsync(0, size, cancellationToken).ConfigureAwait(false))
                ranges.Add(new SourceRange(e.Offset, e.Length, e.IsHole ? SourceRangeKind.Discard : SourceRangeKind.Data));
        }
        else
        {
            if (baseEra is null)
                throw new InvalidOperationException($"the base of {volume} has no era; a full backup is needed");
            var set = await pool.ChangesSinceEraAsync(volume, baseEra.Value, snapshotName, cancellationToken).ConfigureAwait(false);
            foreach (var e in set.Extents)
            {
                long end = Math.Min(e.Offset + e.Length, size);
                if (end > e.Offset)
                    ranges.Add(new SourceRange(e.Offset, end - e.Offset, e.IsHole ? SourceRangeKind.Discard : SourceRangeKind.Data));
            }
        }
        var hashes = BlockHashTable.Create(hashesPath, size, ReplicationBlockSize(snapshot), basePoint is null ? null : baseHashes);
        return new SnapshotBackupSource(agent, volume, snapshot, basePoint, ranges, hashes);
    }

    /// <summary>Reads the snapshot once, past the page cache where the pool can (the sender reads ahead into aligned windows).</summary>
    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken) =>
        _snapshot.ReadStreamingAsync(offset, buffer, cancellationToken);

    /// <summary>Reads scattered changed blocks with one call: the pool reads those side by side in its data file together.</summary>
    public ValueTask ReadAsync(IReadOnlyList<VolumeRange> ranges, Memory<byte> buffer, CancellationToken cancellationToken) =>
        _snapshot.ReadStreamingAsync(ranges, buffer, cancellationToken);

    public void Dispose() => Hashes.Dispose();

    public static int ReplicationBlockSize(IBlockVolume volume) => Math.Min(volume.BlockSize, WireProtocol.MaxBlockSize);
}
