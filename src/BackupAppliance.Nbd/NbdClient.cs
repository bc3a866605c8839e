using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace BackupAppliance.Nbd;

/// <summary>
/// A minimal NBD client: fixed-newstyle handshake with NBD_OPT_GO, then one request at a time with
/// simple replies. For tests that must know exactly which writes a server acknowledged, and for
/// reading remote volumes (a future hydration source).
/// </summary>
public sealed class NbdClient : IAsyncDisposable
{
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;
    private readonly byte[] _header = new byte[NbdConstants.RequestHeaderLength];
    private ulong _cookie;
    private bool _disposed;

    private NbdClient(TcpClient tcp, long size, ushort flags)
    {
        _tcp = tcp;
        _stream = tcp.GetStream();
        Size = size;
        TransmissionFlags = flags;
    }

    public long Size { get; }
    public ushort TransmissionFlags { get; }
    public bool IsReadOnly => (TransmissionFlags & NbdConstants.TxReadOnly) != 0;

    public static async Task<NbdClient> ConnectAsync(string host, int port, string export, CancellationToken cancellationToken)
    {
        var tcp = new TcpClient { NoDelay = true };
        try
        {
            await tcp.ConnectAsync(host, port, cancellationToken).ConfigureAwait(false);
            var s = tcp.GetStream();
            var greeting = new byte[18];
            await s.ReadExactlyAsync(greeting, cancellationToken).ConfigureAwait(false);
            if (BinaryPrimitives.ReadUInt64BigEndian(greeting) != NbdConstants.NbdMagic
                || BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)) != NbdConstants.OptionMagic)
                throw new NbdClientException(0, "the server is not a fixed-newstyle NBD server");
            ushort serverFlags = BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
            uint clientFlags = NbdConstants.ClientFlagFixedNewstyle
                | ((serverFlags & NbdConstants.FlagNoZeroes) != 0 ? NbdConstants.ClientFlagNoZeroes : 0);
            var buf = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(buf, clientFlags);
            await s.WriteAsync(buf, cancellationToken).ConfigureAwait(false);

            byte[] name = Encoding.UTF8.GetBytes(export);
            var opt = new byte[16 + 4 + name.Length + 2];
            BinaryPrimitives.WriteUInt64BigEndian(opt, NbdConstants.OptionMagic);
            BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(8), NbdConstants.OptGo);
            BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(12), (uint)(4 + name.Length + 2));
            BinaryPrimitives.WriteUInt32BigEndian(opt.AsSpan(16), (uint)name.Length);
            name.CopyTo(opt, 20);
            await s.WriteAsync(opt, cancellationToken).ConfigureAwait(false);

            long size = -1;
            ushort flags = 0;
            var head = new byte[20];
            while (true)
            {
                await s.ReadExactlyAsync(head, cancellationToken).ConfigureAwait(false);
                if (BinaryPrimitives.ReadUInt64BigEndian(head) != NbdConstants.OptionReplyMagic)
                    throw new NbdClientException(0, "bad option reply magic");
                uint type = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(12));
                uint len = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(16));
                if (len > 1 << 20)
                    throw new NbdClientException(0, $"option reply of {len} bytes");
                var data = new byte[len];
                await s.ReadExactlyAsync(data, cancellationToken).ConfigureAwait(false);
                if ((type & 0x8000_0000) != 0)
                    throw new NbdClientException(type, $"the server refused export '{export}': {Encoding.UTF8.GetString(data)} (0x{type:x8})");
                if (type == NbdConstants.RepInfo && len >= 12 && BinaryPrimitives.ReadUInt16BigEndian(data) == NbdConstants.InfoExport)
                {
                    size = (long)BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(2));
                    flags = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10));
                }
                if (type == NbdConstants.RepAck)
                    break;
            }
            if (size < 0)
                throw new NbdClientException(0, "the server did not send the export's size");
            return new NbdClient(tcp, size, flags);
        }
        catch
        {
            tcp.Dispose();
            throw;
        }
    }

    public async Task ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        await RequestAsync(NbdConstants.CmdRead, 0, offset, (uint)buffer.Length, ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
        await _stream.ReadExactlyAsync(buffer, cancellationToken).ConfigureAwait(false);
    }

    public Task WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken) =>
        RequestAsync(NbdConstants.CmdWrite, fua ? NbdConstants.CmdFlagFua : (ushort)0, offset, (uint)data.Length, data, cancellationToken);

    public Task FlushAsync(CancellationToken cancellationToken) =>
        RequestAsync(NbdConstants.CmdFlush, 0, 0, 0, ReadOnlyMemory<byte>.Empty, cancellationToken);

    public Task TrimAsync(long offset, uint length, CancellationToken cancellationToken) =>
        RequestAsync(NbdConstants.CmdTrim, 0, offset, length, ReadOnlyMemory<byte>.Empty, cancellationToken);

    /// <summary>Sends a request and waits for its simple reply header; throws <see cref="NbdClientException"/> on an error reply.</summary>
    private async Task RequestAsync(ushort type, ushort flags, long offset, uint length, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        ulong cookie = ++_cookie;
        BinaryPrimitives.WriteUInt32BigEndian(_header, NbdConstants.RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(_header.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(_header.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(_header.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(_header.AsSpan(16), (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(_header.AsSpan(24), length);
        await _stream.WriteAsync(_header, cancellationToken).ConfigureAwait(false);
        if (!payload.IsEmpty)
            await _stream.WriteAsync(payload, cancellationToken).ConfigureAwait(false);
        var reply = new byte[NbdConstants.SimpleReplyHeaderLength];
        await _stream.ReadExactlyAsync(reply, cancellationToken).ConfigureAwait(false);
        if (BinaryPrimitives.ReadUInt32BigEndian(reply) != NbdConstants.SimpleReplyMagic)
            throw new NbdClientException(0, "bad reply magic");
        if (BinaryPrimitives.ReadUInt64BigEndian(reply.AsSpan(8)) != cookie)
            throw new NbdClientException(0, "reply for another request");
        uint error = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4));
        if (error != 0)
            throw new NbdClientException(error, $"NBD request {type} at {offset}+{length} failed with error {error}");
    }

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
            return;
        _disposed = true;
        try
        {
            BinaryPrimitives.WriteUInt32BigEndian(_header, NbdConstants.RequestMagic);
            BinaryPrimitives.WriteUInt16BigEndian(_header.AsSpan(4), 0);
            BinaryPrimitives.WriteUInt16BigEndian(_header.AsSpan(6), NbdConstants.CmdDisc);
            _header.AsSpan(8).Clear();
            await _stream.WriteAsync(_header).ConfigureAwait(false);
        }
        catch (IOException)
        {
            // The server is gone already: nothing to say goodbye to.
        }
        _tcp.Dispose();
    }
}

/// <summary>An NBD error reply (errno) or a protocol violation by the server (0).</summary>
public sealed class NbdClientException : Exception
{
    public NbdClientException(uint error, string message) : base(message) => Error = error;

    public uint Error { get; }
}
