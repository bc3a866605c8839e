using System.Threading.Channels;
using BackupAppliance.Core;

namespace BackupAppliance.Replication.Sending;

/// <summary>
/// Reads a backup source's data ranges ahead of the frame builder, on a task of its own, so the
/// disk works while the builder compresses and hashes: windows of at most <c>window</c> bytes, in
/// image order, at most <c>depth</c> of them waiting (memory stays bounded). A window gathers the
/// data ranges that follow one another in the change set (scattered changed blocks) and reads them
/// with one call, which the source may serve with fewer, larger reads. Windows are aligned buffers,
/// so a source that reads with direct I/O can read into them. A read the windows do not cover (one
/// going backwards, after a resend) restarts reading ahead from there; a read outside every data
/// range goes to the source itself. One reader at a time.
/// </summary>
internal sealed class SourceReadAhead : IAsyncDisposable
{
    private readonly IBackupSource _source;
    private readonly AlignedBufferPool _buffers;
    private readonly int _depth;
    private Channel<Window>? _windows;
    private CancellationTokenSource? _stop;
    private Task? _reader;
    private Window? _current;

    public SourceReadAhead(IBackupSource source, int window, int depth)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(window, source.BlockSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(depth);
        _source = source;
        _buffers = new AlignedBufferPool(window / source.BlockSize * source.BlockSize, depth + 2);
        _depth = depth;
    }

    /// <summary>Fills <paramref name="destination"/> with the image's bytes at <paramref name="offset"/>.</summary>
    public async ValueTask ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        while (destination.Length > 0)
        {
            if (_current is { } w && w.Find(offset) is { } found)
            {
                int n = (int)Math.Min(destination.Length, found.Available);
                w.Buffer.Memory.Slice(found.At, n).CopyTo(destination);
                destination = destination[n..];
                offset += n;
                continue;
            }
            if (_current is { } passed && offset >= passed.End)
            {
                _current = null;
                Release(passed);
                _current = await NextWindowAsync(cancellationToken).ConfigureAwait(false);
                if (_current is not null && offset >= _current.Pieces[0].Offset)
                    continue;
            }
            var ranges = _source.Ranges;
            int i = DataFrameBuilder.FirstEndingAfter(ranges, offset);
            bool inData = i < ranges.Count && ranges[i].Offset <= offset && ranges[i].Kind == SourceRangeKind.Data;
            if (!inData)
            {
                // Outside every data range: straight from the source, up to the next range.
                long upTo = i < ranges.Count && ranges[i].Offset > offset ? ranges[i].Offset : long.MaxValue;
                int n = (int)Math.Min(destination.Length, upTo - offset);
                await _source.ReadAsync(offset, destination[..n], cancellationToken).ConfigureAwait(false);
                destination = destination[n..];
                offset += n;
                continue;
            }
            // In a data range the windows do not hold (behind them, or past their end): read ahead from here.
            await RestartAsync(offset).ConfigureAwait(false);
            _current = await NextWindowAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public ValueTask DisposeAsync() => StopAsync();

    private async ValueTask<Window?> NextWindowAsync(CancellationToken cancellationToken)
    {
        var reader = _windows!.Reader;
        while (await reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
        {
            if (reader.TryRead(out var w))
                return w;
        }
        return null; // read to the end of the ranges
    }

    private async ValueTask RestartAsync(long offset)
    {
        await StopAsync().ConfigureAwait(false);
        _windows = Channel.CreateBounded<Window>(new BoundedChannelOptions(_depth) { SingleReader = true, SingleWriter = true });
        _stop = new CancellationTokenSource();
        var windows = _windows;
        var token = _stop.Token;
        _reader = Task.Run(() => ReadWindowsAsync(offset, windows.Writer, token), CancellationToken.None);
    }

    private async Task ReadWindowsAsync(long from, ChannelWriter<Window> windows, CancellationToken cancellationToken)
    {
        try
        {
            var ranges = _source.Ranges;
            int i = DataFrameBuilder.FirstEndingAfter(ranges, from);
            long at = i < ranges.Count ? Math.Max(ranges[i].Offset, from) : 0;
            while (true)
            {
                // Gather the data ranges from (i, at) on until the window is full.
                var buffer = _buffers.Rent();
                var pieces = new List<VolumeRange>();
                int filled = 0;
                for (; i < ranges.Count && filled < buffer.Length; i++)
                {
                    var r = ranges[i];
                    if (r.Kind != SourceRangeKind.Data)
                        continue;
                    at = Math.Max(at, r.Offset);
                    int n = (int)Math.Min(buffer.Length - filled, r.End - at);
                    pieces.Add(new VolumeRange(at, n));
                    filled += n;
                    at += n;
                    if (at < r.End)
                        break; // the window is full inside this range: the next one goes on from at
                }
                if (pieces.Count == 0)
                {
                    buffer.Dispose();
                    break;
                }
                var w = new Window(pieces, buffer);
                try
                {
                    await _source.ReadAsync(pieces, buffer.Memory[..filled], cancellationToken).ConfigureAwait(false);
                    await windows.WriteAsync(w, cancellationToken).ConfigureAwait(false);
                }
                catch
                {
                    buffer.Dispose();
                    throw;
                }
            }
            windows.TryComplete();
        }
        catch (Exception e)
        {
            windows.TryComplete(e is OperationCanceledException && cancellationToken.IsCancellationRequested ? null : e);
        }
    }

    private async ValueTask StopAsync()
    {
        if (_current is { } current)
        {
            _current = null;
            Release(current);
        }
        if (_reader is null)
            return;
        _stop!.Cancel();
        await _reader.ConfigureAwait(false); // it never throws: failures complete the channel
        while (_windows!.Reader.TryRead(out var w))
            Release(w);
        _stop.Dispose();
        _reader = null;
        _stop = null;
    }

    private static void Release(Window w) => w.Buffer.Dispose();

    /// <summary>Pieces of data ranges, ascending, their bytes one after the other in the buffer.</summary>
    private sealed record Window(List<VolumeRange> Pieces, AlignedBuffer Buffer)
    {
        public long End => Pieces[^1].End;

        /// <summary>Where <paramref name="offset"/>'s byte is in the buffer and how many follow it in its piece; null when no piece holds it.</summary>
        public (int At, long Available)? Find(long offset)
        {
            int at = 0;
            foreach (var p in Pieces)
            {
                if (offset >= p.Offset && offset < p.End)
                    return (at + (int)(offset - p.Offset), p.End - offset);
                at += p.Length;
            }
            return null;
        }
    }
}
