using System.Buffers;

namespace BackupAppliance.Nbd;

/// <summary>
/// The receiving half of a connection: exact-length reads through a small pooled buffer so that
/// option and request headers do not cost a system call each. Large payloads bypass the buffer.
/// Only one reader at a time (the connection's read loop); writes go straight to the stream.
/// </summary>
internal sealed class NbdStreamReader : IDisposable
{
    private const int BufferSize = 64 * 1024;

    private readonly Stream _stream;
    private byte[]? _buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
    private int _start;
    private int _end;

    public NbdStreamReader(Stream stream) => _stream = stream;

    /// <summary>Fills <paramref name="destination"/>; the peer closing first is an <see cref="EndOfStreamException"/>.</summary>
    public async ValueTask ReadExactlyAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        var buffer = _buffer ?? throw new ObjectDisposedException(nameof(NbdStreamReader));
        while (destination.Length > 0)
        {
            if (_start < _end)
            {
                int n = Math.Min(destination.Length, _end - _start);
                buffer.AsMemory(_start, n).CopyTo(destination);
                _start += n;
                destination = destination[n..];
                continue;
            }
            if (destination.Length >= buffer.Length)
            {
                int direct = await _stream.ReadAsync(destination, cancellationToken).ConfigureAwait(false);
                if (direct == 0)
                    throw new EndOfStreamException("peer closed the connection");
                destination = destination[direct..];
                continue;
            }
            int read = await _stream.ReadAsync(buffer.AsMemory(), cancellationToken).ConfigureAwait(false);
            if (read == 0)
                throw new EndOfStreamException("peer closed the connection");
            _start = 0;
            _end = read;
        }
    }

    /// <summary>Reads and drops <paramref name="count"/> bytes (a refused write's payload).</summary>
    public async ValueTask SkipAsync(long count, CancellationToken cancellationToken)
    {
        var buffer = _buffer ?? throw new ObjectDisposedException(nameof(NbdStreamReader));
        while (count > 0)
        {
            if (_start < _end)
            {
                int n = (int)Math.Min(count, _end - _start);
                _start += n;
                count -= n;
                continue;
            }
            int read = await _stream.ReadAsync(buffer.AsMemory(), cancellationToken).ConfigureAwait(false);
            if (read == 0)
                throw new EndOfStreamException("peer closed the connection");
            _start = 0;
            _end = read;
        }
    }

    public void Dispose()
    {
        var buffer = _buffer;
        _buffer = null;
        if (buffer is not null)
            ArrayPool<byte>.Shared.Return(buffer);
    }
}
