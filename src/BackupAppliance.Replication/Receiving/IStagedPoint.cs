namespace BackupAppliance.Replication.Receiving;

/// <summary>
/// A backup point being received: a writable volume nobody else sees, its block hash table and its
/// durable progress. Extents are applied in ascending order; applying one twice writes the same
/// bytes, so a replay after a crash is harmless. Nothing is visible as a point until
/// <see cref="PublishAsync"/> returns.
/// </summary>
public interface IStagedPoint : IAsyncDisposable
{
    /// <summary>The request it was begun with and its last durable progress.</summary>
    StagingState State { get; }

    /// <summary>
    /// Writes verified bytes at <paramref name="offset"/> (block-aligned; the last block may end at
    /// the image size) and records their block hashes (32 bytes per block, in order).
    /// </summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, ReadOnlyMemory<byte> blockHashes, CancellationToken cancellationToken);

    /// <summary>
    /// Writes several extents at once (a data frame's), their bytes one after the other in
    /// <paramref name="data"/>: a store may place and write their new blocks together. Each extent
    /// obeys the rules of the single write.
    /// </summary>
    async ValueTask WriteAsync(IReadOnlyList<StagedWrite> extents, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        int at = 0;
        foreach (var e in extents)
        {
            await WriteAsync(e.Offset, data.Slice(at, e.Length), e.BlockHashes, cancellationToken).ConfigureAwait(false);
            at += e.Length;
        }
    }

    /// <summary>
    /// Makes the range read as zeros and records the zero hash for its blocks; with
    /// <paramref name="discard"/> the replica unmaps what it can (the source discarded the range).
    /// </summary>
    ValueTask ZeroAsync(long offset, long length, bool discard, CancellationToken cancellationToken);

    /// <summary>
    /// Makes everything written so far durable (data, then the volume's metadata, then the hash
    /// table), then records that every data frame up to <paramref name="sequence"/> is applied and
    /// the image is complete below <paramref name="position"/>. <paramref name="changedBytes"/> is
    /// the running total of data bytes received (for the point's record).
    /// </summary>
    ValueTask MakeDurableAsync(ulong sequence, long position, long changedBytes, CancellationToken cancellationToken);

    /// <summary>The image digest over the staged hash table (what the agent's commit must carry).</summary>
    byte[] ComputeDigest();

    /// <summary>
    /// Publishes the staging as the volume's newest point, atomically: after a crash it is either
    /// listed whole or not at all. Call only after <see cref="MakeDurableAsync"/> covered every frame
    /// and the digest matched. The staging is gone afterwards.
    /// </summary>
    ValueTask<ReplicaPoint> PublishAsync(byte[] digest, CancellationToken cancellationToken);

    /// <summary>Drops the staging and everything it wrote.</summary>
    ValueTask AbandonAsync(CancellationToken cancellationToken);
}
