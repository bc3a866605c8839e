using System.Buffers;

namespace BackupAppliance.Nbd;

/// <summary>
/// The receiving half of a connection: exact-length blocking reads through a small pooled buffer so
/// that option and request headers do not cost a system call each. Large payloads bypass the
/// buffer. Only one reader at a time (the connection's thread); writes go straight to the stream.
/// </summary>
internal sealed class NbdStreamReader : IDisposable
{
    private const int BufferSize = 64 * 1024;

    private readonly Stream _stream;
    private byte[]? _buffer = ArrayPool<byte>.Shared.Rent(BufferSize);
    private int _start;
    private int _end;

    public NbdStreamReader(Stream stream) => _stream = stream;

    /// <summary>
    /// Fills <paramref name="destination"/>, blocking the calling thread (the connection's own);
    /// the peer closing first, or the socket's receiving side shut, is an <see cref="EndOfStreamException"/>.
    /// </summary>
    public void ReadExactly(Span<byte> destination)
    {
        var buffer = Buffer;
        while (destination.Length > 0)
        {
            if (TakeBuffered(destination) is var taken and > 0)
                destination = destination[taken..];
            else if (destination.Length >= buffer.Length)
                destination = destination[Got(_stream.Read(destination))..];
            else
                Refill(_stream.Read(buffer));
        }
    }

    /// <summary>Reads and drops <paramref name="count"/> bytes (a refused write's payload), blocking like <see cref="ReadExactly"/>.</summary>
    public void Skip(long count)
    {
        var buffer = Buffer;
        while (count > 0)
        {
            if (_start == _end)
                Refill(_stream.Read(buffer));
            int n = (int)Math.Min(count, _end - _start);
            _start += n;
            count -= n;
        }
    }

    private byte[] Buffer => _buffer ?? throw new ObjectDisposedException(nameof(NbdStreamReader));

    /// <summary>Copies what is buffered into <paramref name="destination"/>; how much.</summary>
    private int TakeBuffered(Span<byte> destination)
    {
        int n = Math.Min(destination.Length, _end - _start);
        if (n > 0)
        {
            _buffer.AsSpan(_start, n).CopyTo(destination);
            _start += n;
        }
        return n;
    }

    private void Refill(int read)
    {
        _start = 0;
        _end = Got(read);
    }

    private static int Got(int read) => read > 0 ? read : throw new EndOfStreamException("peer closed the connection");

    public void Dispose()
    {
        var buffer = _buffer;
        _buffer = null;
        if (buffer is not null)
            ArrayPool<byte>.Shared.Return(buffer);
    }
}
