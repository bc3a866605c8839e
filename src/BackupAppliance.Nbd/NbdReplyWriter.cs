using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace BackupAppliance.Nbd;

/// <summary>
/// Encodes transmission replies, simple or structured as negotiated, and sends each whole reply
/// in one blocking send under a lock: requests complete concurrently and out of order, on the
/// connection's thread or the thread pool, but their replies never interleave on the wire. Buffers
/// that carry data are the caller's, usually with room left in front for the header
/// (<see cref="ReadDataOffset"/>, <see cref="StatusDataOffset"/>). A reply in two parts (a large
/// read's header and data) goes out in one gathered send on a socket.
/// </summary>
internal sealed class NbdReplyWriter
{
    private const int MaxMessageChars = 200;

    private readonly Stream _stream;
    private readonly Socket? _socket;
    private readonly bool _structured;
    private readonly Lock _lock = new();
    // The two parts of a gathered send; used only under _lock.
    private readonly ArraySegment<byte>[] _parts = new ArraySegment<byte>[2];

    public NbdReplyWriter(Stream stream, bool structured)
    {
        _stream = stream;
        _socket = (stream as NetworkStream)?.Socket;
        _structured = structured;
    }

    /// <summary>Where read data goes in its buffer: after a simple reply header, or a chunk header and its offset.</summary>
    public int ReadDataOffset => _structured
        ? NbdConstants.StructuredReplyHeaderLength + 8
        : NbdConstants.SimpleReplyHeaderLength;

    /// <summary>Where block status descriptors go in their buffer: after the chunk header and the context id.</summary>
    public const int StatusDataOffset = NbdConstants.StructuredReplyHeaderLength + 4;

    /// <summary>Success without data: a simple reply, or a final NBD_REPLY_TYPE_NONE chunk.</summary>
    public void SendSuccess(ulong cookie)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(NbdConstants.StructuredReplyHeaderLength);
        try
        {
            int length = _structured
                ? WriteChunkHeader(buffer, NbdConstants.ReplyTypeNone, cookie, 0)
                : WriteSimpleHeader(buffer, 0, cookie);
            Send(buffer.AsMemory(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Failure: a simple reply with the error, or a final NBD_REPLY_TYPE_ERROR chunk with a message.</summary>
    public void SendError(ulong cookie, uint error, string message)
    {
        if (!_structured)
        {
            byte[] simple = ArrayPool<byte>.Shared.Rent(NbdConstants.SimpleReplyHeaderLength);
            try
            {
                int length = WriteSimpleHeader(simple, error, cookie);
                Send(simple.AsMemory(0, length));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(simple);
            }
            return;
        }

        if (message.Length > MaxMessageChars)
            message = message[..MaxMessageChars];
        int messageLength = Encoding.UTF8.GetByteCount(message);
        int payloadLength = 6 + messageLength;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(NbdConstants.StructuredReplyHeaderLength + payloadLength);
        try
        {
            int header = WriteChunkHeader(buffer, NbdConstants.ReplyTypeError, cookie, payloadLength);
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(header), error);
            BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(header + 4), (ushort)messageLength);
            Encoding.UTF8.GetBytes(message, buffer.AsSpan(header + 6));
            Send(buffer.AsMemory(0, header + payloadLength));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Read data as a simple reply followed by the data, or one final NBD_REPLY_TYPE_OFFSET_DATA
    /// chunk (the data was read in full before sending, so no error can follow it). The data sits
    /// in <paramref name="buffer"/> at <paramref name="dataOffset"/>: either
    /// <see cref="ReadDataOffset"/>, leaving room to put the header in front, or 0, and the header
    /// comes from a buffer of its own (large reads, so their buffer stays the size of the data and
    /// not the next power of two up); either way the reply is one send on a socket.
    /// </summary>
    public void SendRead(ulong cookie, ulong offset, byte[] buffer, int dataOffset, int dataLength)
    {
        if (dataOffset != 0)
        {
            WriteReadHeader(buffer, cookie, offset, dataLength);
            Send(buffer.AsMemory(0, dataOffset + dataLength));
            return;
        }
        byte[] header = ArrayPool<byte>.Shared.Rent(ReadDataOffset);
        try
        {
            WriteReadHeader(header, cookie, offset, dataLength);
            Send(header.AsMemory(0, ReadDataOffset), buffer.AsMemory(0, dataLength));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(header);
        }
    }

    private void WriteReadHeader(Span<byte> buffer, ulong cookie, ulong offset, int dataLength)
    {
        if (_structured)
        {
            int header = WriteChunkHeader(buffer, NbdConstants.ReplyTypeOffsetData, cookie, 8 + dataLength);
            BinaryPrimitives.WriteUInt64BigEndian(buffer[header..], offset);
        }
        else
        {
            WriteSimpleHeader(buffer, 0, cookie);
        }
    }

    /// <summary>One final NBD_REPLY_TYPE_BLOCK_STATUS chunk; descriptors already placed at <see cref="StatusDataOffset"/>.</summary>
    public void SendBlockStatus(ulong cookie, uint contextId, byte[] buffer, int descriptorCount)
    {
        int payloadLength = 4 + 8 * descriptorCount;
        int header = WriteChunkHeader(buffer, NbdConstants.ReplyTypeBlockStatus, cookie, payloadLength);
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(header), contextId);
        Send(buffer.AsMemory(0, header + payloadLength));
    }

    /// <summary>
    /// Read data already lent into <paramref name="pipe"/> (<see cref="SplicePipe.Filled"/> bytes):
    /// the same reply as <see cref="SendRead"/>, its header sent and the pipe spliced into the
    /// socket under the lock.
    /// </summary>
    public void SendRead(ulong cookie, ulong offset, SplicePipe pipe)
    {
        if (_socket is null)
            throw new InvalidOperationException("a spliced reply needs a socket");
        Span<byte> header = stackalloc byte[NbdConstants.StructuredReplyHeaderLength + 8];
        WriteReadHeader(header, cookie, offset, pipe.Filled);
        lock (_lock)
            pipe.SendTo(_socket, header[..ReadDataOffset]);
    }

    private void Send(ReadOnlyMemory<byte> reply) => Send(reply, ReadOnlyMemory<byte>.Empty);

    /// <summary>
    /// One reply, in one or two parts, with nothing from another reply in between; blocks until the
    /// socket has taken it. Two parts on a socket are one sendmsg (a second send would cost a system
    /// call and, on a full socket, a second wait); on other streams, two writes.
    /// </summary>
    private void Send(ReadOnlyMemory<byte> first, ReadOnlyMemory<byte> second)
    {
        lock (_lock)
        {
            if (second.IsEmpty)
            {
                _stream.Write(first.Span);
            }
            else if (_socket is not null && MemoryMarshal.TryGetArray(first, out var head) && MemoryMarshal.TryGetArray(second, out var tail))
            {
                _parts[0] = head;
                _parts[1] = tail;
                try
                {
                    // A blocking send returns once every byte is taken; the socket is closed on abort, which ends it.
                    _socket.Send(_parts, SocketFlags.None);
                }
                catch (SocketException e)
                {
                    // As NetworkStream reports a failed write, so callers see one kind of failure.
                    throw new IOException($"sending a reply failed: {e.Message}", e);
                }
                finally
                {
                    _parts[0] = _parts[1] = default;
                }
            }
            else
            {
                _stream.Write(first.Span);
                _stream.Write(second.Span);
            }
        }
    }

    private static int WriteSimpleHeader(Span<byte> buffer, uint error, ulong cookie)
    {
        BinaryPrimitives.WriteUInt32BigEndian(buffer, NbdConstants.SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(buffer[4..], error);
        BinaryPrimitives.WriteUInt64BigEndian(buffer[8..], cookie);
        return NbdConstants.SimpleReplyHeaderLength;
    }

    /// <summary>Every chunk we send is the only, hence final, chunk of its reply.</summary>
    private static int WriteChunkHeader(Span<byte> buffer, ushort type, ulong cookie, int payloadLength)
    {
        BinaryPrimitives.WriteUInt32BigEndian(buffer, NbdConstants.StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(buffer[4..], NbdConstants.ReplyFlagDone);
        BinaryPrimitives.WriteUInt16BigEndian(buffer[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(buffer[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(buffer[16..], (uint)payloadLength);
        return NbdConstants.StructuredReplyHeaderLength;
    }
}
