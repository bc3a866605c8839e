using System.Threading.Channels;
using BackupAppliance.Core;

namespace BackupAppliance.Replication.Sending;

/// <summary>
/// Reads a backup source's data ranges ahead of the frame builder, on a task of its own, so the
/// disk works while the builder compresses and hashes: windows of at most <c>window</c> bytes, in
/// image order, at most <c>depth</c> of them waiting (memory stays bounded). Windows are aligned
/// buffers, so a source that reads with direct I/O can read into them. A read the windows do not
/// cover (one going backwards, after a resend) restarts reading ahead from there; a read outside
/// every data range goes to the source itself. One reader at a time.
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
            if (_current is { } w && offset >= w.Offset && offset < w.End)
            {
                int n = (int)Math.Min(destination.Length, w.End - offset);
                w.Buffer.Memory.Slice((int)(offset - w.Offset), n).CopyTo(destination);
                destination = destination[n..];
                offset += n;
                continue;
            }
            if (_current is { } passed && offset >= passed.Offset)
            {
                _current = null;
                Release(passed);
                _current = await NextWindowAsync(cancellationToken).ConfigureAwait(false);
                if (_current is not null && offset >= _current.Offset)
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
            for (int i = DataFrameBuilder.FirstEndingAfter(ranges, from); i < ranges.Count; i++)
            {
                var r = ranges[i];
                if (r.Kind != SourceRangeKind.Data)
                    continue;
                for (long at = Math.Max(r.Offset, from); at < r.End;)
                {
                    var buffer = _buffers.Rent();
                    int n = (int)Math.Min(buffer.Length, r.End - at);
                    var w = new Window(at, n, buffer);
                    try
                    {
                        await _source.ReadAsync(at, buffer.Memory[..n], cancellationToken).ConfigureAwait(false);
                        await windows.WriteAsync(w, cancellationToken).ConfigureAwait(false);
                    }
                    catch
                    {
                        buffer.Dispose();
                        throw;
                    }
                    at += n;
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

    private sealed record Window(long Offset, int Length, AlignedBuffer Buffer)
    {
        public long End => Offset + Length;
    }
}
