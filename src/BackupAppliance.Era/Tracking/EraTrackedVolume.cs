using BackupAppliance.Core;

namespace BackupAppliance.Era.Tracking;

/// <summary>
/// The era tracker on a volume's write path (dm-era stacked on a thin device): writes mark their
/// blocks, discards and write-zeroes mark the blocks whose content they change, each mark committed
/// before the operation reaches the volume below. Reads, flushes and allocation queries pass through.
/// </summary>
public sealed class EraTrackedVolume : IBlockVolume
{
    private readonly IBlockVolume _inner;
    private readonly EraTracker _tracker;

    public EraTrackedVolume(IBlockVolume inner, EraTracker tracker)
    {
        if (inner.BlockSize != tracker.BlockSize)
            throw new ArgumentException($"volume {inner.Name} has {inner.BlockSize}-byte blocks, its era tracker {tracker.BlockSize}-byte ones");
        if ((inner.Size + tracker.BlockSize - 1) / tracker.BlockSize > tracker.NrBlocks)
            throw new ArgumentException($"volume {inner.Name} ({inner.Size} bytes) is larger than its era tracker covers ({tracker.NrBlocks} blocks)");
        _inner = inner;
        _tracker = tracker;
    }

    public string Name => _inner.Name;
    public long Size => _inner.Size;
    public int BlockSize => _inner.BlockSize;
    public bool IsReadOnly => _inner.IsReadOnly;
    public EraTracker Tracker => _tracker;
    public IBlockVolume Inner => _inner;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken) =>
        _inner.ReadAsync(offset, buffer, cancellationToken);

    public ValueTask ReadStreamingAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken) =>
        _inner.ReadStreamingAsync(offset, buffer, cancellationToken);

    public ValueTask ReadStreamingAsync(IReadOnlyList<VolumeRange> ranges, Memory<byte> buffer, CancellationToken cancellationToken) =>
        _inner.ReadStreamingAsync(ranges, buffer, cancellationToken);

    public ValueTask<bool> TryLendAsync(long offset, int length, IVolumeLendSink sink, CancellationToken cancellationToken) =>
        _inner.TryLendAsync(offset, length, sink, cancellationToken);

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        if (data.Length == 0)
            return _inner.WriteAsync(offset, data, fua, cancellationToken);
        var (first, end) = Covering(offset, data.Length);
        // Fast path: the gate is open and every block is already marked in this era.
        if (_tracker.Gate.TryEnter())
        {
            if (_tracker.AreAllMarked(first, end))
            {
                ValueTask write;
                try
                {
                    write = _inner.WriteAsync(offset, data, fua, cancellationToken);
                }
                catch
                {
                    _tracker.Gate.Exit();
                    throw;
                }
                if (write.IsCompletedSuccessfully)
                {
                    write.GetAwaiter().GetResult();
                    _tracker.Gate.Exit();
                    return default;
                }
                return ExitAfter(write);
            }
            return MarkAndWrite(first, end, entered: true, offset, data, fua, cancellationToken);
        }
        return MarkAndWrite(first, end, entered: false, offset, data, fua, cancellationToken);
    }

    public async ValueTask DiscardAsync(long offset, long length, bool fua, CancellationToken cancellationToken)
    {
        // IBlockVolume: discard unmaps whole blocks inside the range; a tail block counts as whole at the end of the volume.
        long bs = BlockSize;
        long first = (offset + bs - 1) / bs, end = (offset + length) / bs;
        if (offset + length == Size && Size % bs != 0)
            end = (Size + bs - 1) / bs;
        await Changing(first, end, onlyMapped: true, ct => _inner.DiscardAsync(offset, length, fua, ct), cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua, CancellationToken cancellationToken)
    {
        var (first, end) = Covering(offset, length);
        // Zeroing a hole changes nothing unless the hole must be filled (no_hole provisions it).
        await Changing(first, end, onlyMapped: !noHole, ct => _inner.WriteZeroesAsync(offset, length, noHole, fua, ct), cancellationToken).ConfigureAwait(false);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken) => _inner.FlushAsync(cancellationToken);

    public ValueTask<IReadOnlyList<VolumeExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken) =>
        _inner.GetAllocationAsync(offset, length, cancellationToken);

    private (uint First, uint End) Covering(long offset, long length)
    {
        long bs = BlockSize;
        return ((uint)(offset / bs), (uint)((offset + length + bs - 1) / bs));
    }

    private async ValueTask ExitAfter(ValueTask write)
    {
        try
        {
            await write.ConfigureAwait(false);
        }
        finally
        {
            _tracker.Gate.Exit();
        }
    }

    /// <summary>
    /// A write whose blocks need marking: the volume below gets it with the mark's commit as what it
    /// must wait for before the write lands (<see cref="IBlockVolume.WriteAfterAsync"/>), so that a
    /// copy-on-write fills its new blocks while the mark commits (measured over NBD, 4 KiB writes
    /// breaking sharing: tracking cost 40% of their rate when the copy waited for the commit).
    /// </summary>
    private async ValueTask MarkAndWrite(uint first, uint end, bool entered, long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        if (!entered)
            await _tracker.Gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var mark = _tracker.MarkAsync(first, end, cancellationToken);
            if (mark.IsCompleted)
            {
                mark.GetAwaiter().GetResult();
                await _inner.WriteAsync(offset, data, fua, cancellationToken).ConfigureAwait(false);
            }
            else
                await _inner.WriteAfterAsync(offset, data, fua, mark.AsTask(), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _tracker.Gate.Exit();
        }
    }

    /// <summary>Marks the blocks in [first, end) that hold data (or all of them), then runs the operation.</summary>
    private async ValueTask Changing(long first, long end, bool onlyMapped, Func<CancellationToken, ValueTask> op, CancellationToken cancellationToken)
    {
        await _tracker.Gate.EnterAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (end > first)
            {
                long bs = BlockSize;
                if (!onlyMapped)
                    await _tracker.MarkAsync((uint)first, (uint)end, cancellationToken).ConfigureAwait(false);
                else
                {
                    long from = first * bs, to = Math.Min(end * bs, Size);
                    foreach (var e in await _inner.GetAllocationAsync(from, to - from, cancellationToken).ConfigureAwait(false))
                        if (!e.IsHole)
                            await _tracker.MarkAsync((uint)(e.Offset / bs), (uint)((e.Offset + e.Length + bs - 1) / bs), cancellationToken).ConfigureAwait(false);
                }
            }
            await op(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _tracker.Gate.Exit();
        }
    }
}
