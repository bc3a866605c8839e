using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace BackupAppliance.Nbd.Tests.Support;

/// <summary>
/// Protocol values written out from the NBD protocol document, independently of the server's
/// own constants, so a wrong value on one side cannot hide behind the same wrong value on the other.
/// </summary>
public static class Wire
{
    public const ulong NbdMagic = 0x4e42444d41474943;
    public const ulong IHaveOpt = 0x49484156454f5054;
    public const ulong OptReplyMagic = 0x3e889045565a9;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleMagic = 0x67446698;
    public const uint StructuredMagic = 0x668e33ef;

    public const uint CFixed = 1, CNoZeroes = 2;

    public const uint OptExportName = 1, OptAbort = 2, OptList = 3, OptStartTls = 5, OptInfo = 6, OptGo = 7,
        OptStructured = 8, OptListMeta = 9, OptSetMeta = 10;

    public const uint RepAck = 1, RepServer = 2, RepInfo = 3, RepMeta = 4;
    public const uint ErrUnsup = 0x80000001, ErrInvalid = 0x80000003, ErrUnknown = 0x80000006, ErrTooBig = 0x80000009;

    public const ushort InfoExport = 0, InfoName = 1, InfoDescription = 2, InfoBlockSize = 3;

    public const ushort FHasFlags = 1, FReadOnly = 2, FFlush = 4, FFua = 8, FTrim = 32, FWriteZeroes = 64, FDf = 128, FMultiConn = 256;

    public const ushort CmdRead = 0, CmdWrite = 1, CmdDisc = 2, CmdFlush = 3, CmdTrim = 4, CmdCache = 5, CmdWriteZeroes = 6, CmdBlockStatus = 7;
    public const ushort FlagFua = 1, FlagNoHole = 2, FlagDf = 4, FlagReqOne = 8, FlagFastZero = 16;

    public const ushort ChunkNone = 0, ChunkOffsetData = 1, ChunkOffsetHole = 2, ChunkBlockStatus = 5, ChunkError = 0x8001;
    public const ushort ReplyFlagDone = 1;

    public const uint EPerm = 1, EIo = 5, EInval = 22, ENoSpc = 28, EShutdown = 108;

    /// <summary>Option data of NBD_OPT_INFO / NBD_OPT_GO.</summary>
    public static byte[] InfoRequest(string name, params ushort[] infos)
    {
        var n = Encoding.UTF8.GetBytes(name);
        var data = new byte[4 + n.Length + 2 + 2 * infos.Length];
        BinaryPrimitives.WriteUInt32BigEndian(data, (uint)n.Length);
        n.CopyTo(data, 4);
        BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(4 + n.Length), (ushort)infos.Length);
        for (int i = 0; i < infos.Length; i++)
            BinaryPrimitives.WriteUInt16BigEndian(data.AsSpan(6 + n.Length + 2 * i), infos[i]);
        return data;
    }

    /// <summary>Option data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT.</summary>
    public static byte[] MetaRequest(string name, params string[] queries)
    {
        var ms = new MemoryStream();
        void U32(uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32BigEndian(b, v); ms.Write(b); }
        var n = Encoding.UTF8.GetBytes(name);
        U32((uint)n.Length);
        ms.Write(n);
        U32((uint)queries.Length);
        foreach (var q in queries)
        {
            var b = Encoding.UTF8.GetBytes(q);
            U32((uint)b.Length);
            ms.Write(b);
        }
        return ms.ToArray();
    }

    public static byte[] Request(ushort flags, ushort type, ulong cookie, ulong offset, uint length, uint magic = RequestMagic)
    {
        var r = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(r, magic);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt16BigEndian(r.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(r.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(r.AsSpan(24), length);
        return r;
    }

    public static byte[] Option(uint option, byte[] data, ulong magic = IHaveOpt, uint? declaredLength = null)
    {
        var o = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(o, magic);
        BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(12), declaredLength ?? (uint)data.Length);
        data.CopyTo(o, 16);
        return o;
    }
}

public sealed record OptionReply(uint Option, uint Type, byte[] Data)
{
    public bool IsError => (Type & 0x80000000) != 0;
    public string Text => Encoding.UTF8.GetString(Data);
}

public sealed record SimpleReply(uint Error, ulong Cookie, byte[] Data);

public sealed record Chunk(ushort Flags, ushort Type, ulong Cookie, byte[] Payload)
{
    public bool Done => (Flags & Wire.ReplyFlagDone) != 0;
    public uint Error => BinaryPrimitives.ReadUInt32BigEndian(Payload);
    public string ErrorMessage => Encoding.UTF8.GetString(Payload, 6, BinaryPrimitives.ReadUInt16BigEndian(Payload.AsSpan(4)));

    /// <summary>(length, status) descriptors of a BLOCK_STATUS chunk, after its context id.</summary>
    public List<(uint Length, uint Status)> Descriptors()
    {
        var list = new List<(uint, uint)>();
        for (int p = 4; p < Payload.Length; p += 8)
            list.Add((BinaryPrimitives.ReadUInt32BigEndian(Payload.AsSpan(p)), BinaryPrimitives.ReadUInt32BigEndian(Payload.AsSpan(p + 4))));
        return list;
    }
}

public sealed record GoResult(ulong Size, ushort Flags, List<OptionReply> Replies);

/// <summary>
/// A byte-level NBD client for tests: every field is written and read by hand, with a timeout on
/// each read so a server that stops answering fails the test instead of hanging it.
/// </summary>
public sealed class RawNbdClient : IAsyncDisposable
{
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(15);

    private readonly Socket _socket;
    private readonly NetworkStream _stream;

    private RawNbdClient(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public Socket Socket => _socket;

    public static async Task<RawNbdClient> ConnectAsync(int port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await s.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        return new RawNbdClient(s);
    }

    /// <summary>Connects, checks the greeting and sends client flags (fixed newstyle + no zeroes by default).</summary>
    public static async Task<RawNbdClient> HandshakeAsync(int port, uint clientFlags = Wire.CFixed | Wire.CNoZeroes)
    {
        var c = await ConnectAsync(port);
        ushort flags = await c.ReadGreetingAsync();
        Assert.Equal(3, flags);
        await c.SendU32Async(clientFlags);
        return c;
    }

    /// <summary>Handshake, optional structured replies and base:allocation, then NBD_OPT_GO.</summary>
    public static async Task<(RawNbdClient Client, GoResult Go)> OpenAsync(int port, string export, bool structured, bool allocation = false)
    {
        var c = await HandshakeAsync(port);
        if (structured)
            Assert.Equal(Wire.RepAck, (await c.OptionAsync(Wire.OptStructured, [])).Single().Type);
        if (allocation)
        {
            var replies = await c.OptionAsync(Wire.OptSetMeta, Wire.MetaRequest(export, "base:allocation"));
            Assert.Equal(Wire.RepAck, replies[^1].Type);
        }
        var go = await c.GoAsync(export);
        return (c, go);
    }

    public async Task<ushort> ReadGreetingAsync()
    {
        var g = await ReadExactAsync(18);
        Assert.Equal(Wire.NbdMagic, BinaryPrimitives.ReadUInt64BigEndian(g));
        Assert.Equal(Wire.IHaveOpt, BinaryPrimitives.ReadUInt64BigEndian(g.AsSpan(8)));
        return BinaryPrimitives.ReadUInt16BigEndian(g.AsSpan(16));
    }

    public async Task SendAsync(byte[] bytes) => await _stream.WriteAsync(bytes);

    public Task SendU32Async(uint v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        return SendAsync(b);
    }

    public async Task<OptionReply> ReadOptionReplyAsync()
    {
        var h = await ReadExactAsync(20);
        Assert.Equal(Wire.OptReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(h));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
        Assert.True(length < 1 << 20, $"option reply length {length}");
        return new OptionReply(BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12)), await ReadExactAsync((int)length));
    }

    /// <summary>Sends an option and collects replies up to the final one (ACK or an error).</summary>
    public async Task<List<OptionReply>> OptionAsync(uint option, byte[] data)
    {
        await SendAsync(Wire.Option(option, data));
        var replies = new List<OptionReply>();
        while (true)
        {
            var r = await ReadOptionReplyAsync();
            Assert.Equal(option, r.Option);
            replies.Add(r);
            if (r.Type == Wire.RepAck || r.IsError)
                return replies;
        }
    }

    public async Task<GoResult> GoAsync(string export, uint option = Wire.OptGo)
    {
        var replies = await OptionAsync(option, Wire.InfoRequest(export, Wire.InfoName, Wire.InfoDescription, Wire.InfoBlockSize));
        Assert.True(replies[^1].Type == Wire.RepAck, $"GO '{export}' failed: {replies[^1].Type:x} {replies[^1].Text}");
        var info = replies.Single(r => r.Type == Wire.RepInfo && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == Wire.InfoExport);
        Assert.Equal(12, info.Data.Length);
        return new GoResult(BinaryPrimitives.ReadUInt64BigEndian(info.Data.AsSpan(2)), BinaryPrimitives.ReadUInt16BigEndian(info.Data.AsSpan(10)), replies);
    }

    public Task SendRequestAsync(ushort flags, ushort type, ulong cookie, ulong offset, uint length, byte[]? payload = null)
    {
        var r = Wire.Request(flags, type, cookie, offset, length);
        return SendAsync(payload is null ? r : [.. r, .. payload]);
    }

    public async Task<SimpleReply> ReadSimpleReplyAsync(int dataLengthIfOk = 0)
    {
        var h = await ReadExactAsync(16);
        Assert.Equal(Wire.SimpleMagic, BinaryPrimitives.ReadUInt32BigEndian(h));
        uint error = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(4));
        var data = error == 0 && dataLengthIfOk > 0 ? await ReadExactAsync(dataLengthIfOk) : [];
        return new SimpleReply(error, BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8)), data);
    }

    public async Task<Chunk> ReadChunkAsync()
    {
        var h = await ReadExactAsync(20);
        Assert.Equal(Wire.StructuredMagic, BinaryPrimitives.ReadUInt32BigEndian(h));
        uint length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
        Assert.True(length <= (64u << 20), $"chunk length {length}");
        return new Chunk(BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(4)), BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(6)),
            BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8)), await ReadExactAsync((int)length));
    }

    /// <summary>True if the server closes the connection (reads end) within the timeout.</summary>
    public async Task<bool> ClosedByServerAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? ReadTimeout);
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                int n = await _stream.ReadAsync(buffer, cts.Token);
                if (n == 0)
                    return true;
            }
        }
        catch (IOException)
        {
            return true; // reset
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public async Task<byte[]> ReadExactAsync(int length)
    {
        var buffer = new byte[length];
        using var cts = new CancellationTokenSource(ReadTimeout);
        await _stream.ReadExactlyAsync(buffer, cts.Token);
        return buffer;
    }

    /// <summary>Half-closes: the server sees end of stream after what was sent.</summary>
    public void ShutdownSend() => _socket.Shutdown(SocketShutdown.Send);

    /// <summary>Drops the connection with a reset instead of an orderly close.</summary>
    public void Reset()
    {
        _socket.LingerState = new LingerOption(true, 0);
        _socket.Close();
    }

    public async ValueTask DisposeAsync() => await _stream.DisposeAsync();
}
