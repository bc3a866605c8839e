namespace BackupAppliance.Core;

/// <summary>
/// A virtual disk: what thin volumes, snapshots, clones, NBD filters and the replication reader all
/// speak. Offsets and lengths are in bytes; callers validate ranges against <see cref="Size"/> at
/// their boundary, implementations assert them. Failures a client should see (no space, read-only,
/// bad range, I/O error) are <see cref="VolumeException"/>s.
/// </summary>
public interface IBlockVolume
{
    string Name { get; }

    /// <summary>Size in bytes.</summary>
    long Size { get; }

    /// <summary>Allocation unit in bytes (the pool's data block size); I/O of any alignment is accepted.</summary>
    int BlockSize { get; }

    bool IsReadOnly { get; }

    ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>Writes; with <paramref name="fua"/> the data is durable when the call returns.</summary>
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken);

    /// <summary>
    /// Reads like <see cref="ReadAsync"/>, for data read once in a pass over the volume (a backup
    /// reading its snapshot): the volume may go past its cache (direct I/O) when the offset, the
    /// length and the buffer's memory are <see cref="AlignedBufferPool.Alignment"/>-aligned.
    /// </summary>
    ValueTask ReadStreamingAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken) =>
        ReadAsync(offset, buffer, cancellationToken);

    /// <summary>
    /// Writes like <see cref="WriteAsync"/> without FUA, for data written once and not read back
    /// soon (a replica being filled): the volume may go past its cache (direct I/O) when the offset,
    /// the length and the data's memory are <see cref="AlignedBufferPool.Alignment"/>-aligned.
    /// Durable after the next flush, like any write.
    /// </summary>
    ValueTask WriteStreamingAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken) =>
        WriteAsync(offset, data, fua: false, cancellationToken);

    /// <summary>
    /// A streaming read of several ranges at once, into <paramref name="buffer"/> one after the other
    /// (its length is their sum): a volume may read ranges that lie side by side on its disk with
    /// one request (a backup reading scattered changed blocks).
    /// </summary>
    async ValueTask ReadStreamingAsync(IReadOnlyList<VolumeRange> ranges, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int at = 0;
        foreach (var r in ranges)
        {
            await ReadStreamingAsync(r.Offset, buffer.Slice(at, r.Length), cancellationToken).ConfigureAwait(false);
            at += r.Length;
        }
    }

    /// <summary>
    /// A streaming write of several ranges at once, from <paramref name="data"/> one after the other
    /// (its length is their sum): a volume may place new blocks side by side and write them with one
    /// request (a replica applying scattered changed blocks).
    /// </summary>
    async ValueTask WriteStreamingAsync(IReadOnlyList<VolumeRange> ranges, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        int at = 0;
        foreach (var r in ranges)
        {
            await WriteStreamingAsync(r.Offset, data.Slice(at, r.Length), cancellationToken).ConfigureAwait(false);
            at += r.Length;
        }
    }

    /// <summary>
    /// Writes like <see cref="WriteAsync"/>, but may begin before <paramref name="mayLand"/>
    /// completes: nothing of the write becomes readable or durable before then, and if
    /// <paramref name="mayLand"/> fails, the write fails with its exception and changes nothing.
    /// A change tracker passes the commit of the write's mark (dm-era: the mark is durable before
    /// the write lands), so that a volume which fills new blocks for the write (copy-on-write) fills
    /// them meanwhile and maps them after. This default waits, then writes.
    /// </summary>
    async ValueTask WriteAfterAsync(long offset, ReadOnlyMemory<byte> data, bool fua, Task mayLand, CancellationToken cancellationToken)
    {
        await mayLand.ConfigureAwait(false);
        await WriteAsync(offset, data, fua, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Hands the bytes of a range to <paramref name="sink"/> by reference instead of copying them:
    /// the volume calls it once per piece, in order, each piece either bytes of a file or zeroes,
    /// while it holds them still (no write, discard or commit of the volume's store moves those
    /// bytes until the call returns). The sink takes them at once (a splice into a pipe) and must
    /// not read the file after it returns. False, with the sink not called, where the volume cannot
    /// (its bytes do not all lie in one place it can lend, or it never lends: this default); a
    /// failure of the sink comes back as its exception. An NBD server sends reads this way.
    /// </summary>
    ValueTask<bool> TryLendAsync(long offset, int length, IVolumeLendSink sink, CancellationToken cancellationToken) =>
        ValueTask.FromResult(false);

    /// <summary>Unmaps whole blocks inside the range (partial blocks at the edges are left alone); they read as zeroes.</summary>
    ValueTask DiscardAsync(long offset, long length, bool fua, CancellationToken cancellationToken);

    /// <summary>Makes the range read as zeroes; whole blocks may be unmapped unless <paramref name="noHole"/>.</summary>
    ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua, CancellationToken cancellationToken);

    /// <summary>Makes every completed write durable.</summary>
    ValueTask FlushAsync(CancellationToken cancellationToken);

    /// <summary>Allocation of the range, as consecutive extents covering it from <paramref name="offset"/>.</summary>
    ValueTask<IReadOnlyList<VolumeExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken);
}

/// <summary>A run of bytes that is either mapped (holds data) or a hole that reads as zeroes.</summary>
public readonly record struct VolumeExtent(long Offset, long Length, bool IsHole);
