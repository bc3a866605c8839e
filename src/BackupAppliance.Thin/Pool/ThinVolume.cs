using BackupAppliance.Core;

namespace BackupAppliance.Thin.Pool;

/// <summary>A thin volume (or read-only snapshot) of a <see cref="ThinPool"/> as an <see cref="IBlockVolume"/>.</summary>
public sealed class ThinVolume : IBlockVolume
{
    private readonly ThinPool _pool;
    private readonly VolumeEntry _entry;

    internal ThinVolume(ThinPool pool, VolumeEntry entry)
    {
        _pool = pool;
        _entry = entry;
    }

    public string Name => _entry.Name;
    public long Size => _entry.Size;
    public int BlockSize => _pool.DataBlockSize;
    public bool IsReadOnly => _entry.ReadOnly;
    public VolumeEntry Entry => _entry;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        CheckRange(offset, buffer.Length);
        return _pool.ReadAsync(_entry, offset, buffer, streaming: false, cancellationToken);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        CheckRange(offset, data.Length);
        return _pool.WriteAsync(_entry, offset, data, fua, streaming: false, mayLand: null, cancellationToken);
    }

    /// <summary>
    /// New blocks the write needs (breaking sharing, a first write) are allocated and filled at
    /// once and mapped once <paramref name="mayLand"/> has completed; blocks overwritten in place
    /// are written only after it.
    /// </summary>
    public ValueTask WriteAfterAsync(long offset, ReadOnlyMemory<byte> data, bool fua, Task mayLand, CancellationToken cancellationToken)
    {
        CheckRange(offset, data.Length);
        return _pool.WriteAsync(_entry, offset, data, fua, streaming: false, mayLand, cancellationToken);
    }

    /// <summary>Reads past the page cache (direct I/O) where the request and the buffer are aligned and the file system allows.</summary>
    public ValueTask ReadStreamingAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        CheckRange(offset, buffer.Length);
        return _pool.ReadAsync(_entry, offset, buffer, streaming: true, cancellationToken);
    }

    /// <summary>Writes new blocks the write covers whole past the page cache (direct I/O) where the data is aligned and the file system allows.</summary>
    public ValueTask WriteStreamingAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        CheckRange(offset, data.Length);
        return _pool.WriteAsync(_entry, offset, data, fua: false, streaming: true, mayLand: null, cancellationToken);
    }

    /// <summary>Reads several ranges with one hold of the pool's lock; pieces side by side in the data file are read with one call.</summary>
    public ValueTask ReadStreamingAsync(IReadOnlyList<VolumeRange> ranges, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        CheckRanges(ranges, buffer.Length);
        return _pool.ReadAsync(_entry, ranges, buffer, streaming: true, cancellationToken);
    }

    /// <summary>Writes several ranges as one batch of new blocks; blocks allocated side by side are filled with one call.</summary>
    public ValueTask WriteStreamingAsync(IReadOnlyList<VolumeRange> ranges, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        CheckRanges(ranges, data.Length);
        return _pool.WriteAsync(_entry, ranges, data, cancellationToken);
    }

    /// <summary>Lends the range's bytes from the pool's data file, under the pool's lock; false for a volume with an external origin.</summary>
    public ValueTask<bool> TryLendAsync(long offset, int length, IVolumeLendSink sink, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        return _pool.LendAsync(_entry, offset, length, sink, cancellationToken);
    }

    public ValueTask DiscardAsync(long offset, long length, bool fua, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        return _pool.DiscardAsync(_entry, offset, length, fua, cancellationToken);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        if (IsReadOnly)
            throw new VolumeException(VolumeError.ReadOnly, $"volume {Name} is a read-only snapshot");
        return _pool.WriteZeroesAsync(_entry, offset, length, noHole, fua, cancellationToken);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken) => _pool.FlushAsync(cancellationToken);

    public ValueTask<IReadOnlyList<VolumeExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        return _pool.GetAllocationAsync(_entry, offset, length, cancellationToken);
    }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Size || length > Size - offset)
            throw new VolumeException(VolumeError.InvalidArgument, $"range {offset}+{length} is outside volume {Name} ({Size} bytes)");
    }

    private void CheckRanges(IReadOnlyList<VolumeRange> ranges, int bufferLength)
    {
        foreach (var r in ranges)
            CheckRange(r.Offset, r.Length);
        long total = VolumeRange.TotalLength(ranges);
        if (total != bufferLength)
            throw new VolumeException(VolumeError.InvalidArgument, $"{ranges.Count} ranges of volume {Name} cover {total} bytes, but the buffer holds {bufferLength}");
    }
}
