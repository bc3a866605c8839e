using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace BackupAppliance.Integration.Tests.Support;

/// <summary>
/// NBD protocol values written out from the protocol document (not shared with the server, so a
/// wrong constant on one side cannot hide behind the same wrong constant on the other).
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

    public const uint OptExportName = 1, OptList = 3, OptStartTls = 5, OptInfo = 6, OptGo = 7, OptStructured = 8, OptListMeta = 9, OptSetMeta = 10;
    public const uint RepAck = 1, RepInfo = 3;
    public const ushort InfoExport = 0, InfoName = 1, InfoDescription = 2, InfoBlockSize = 3;

    public const ushort FReadOnly = 2;

    public const ushort CmdRead = 0, CmdWrite = 1, CmdDisc = 2, CmdFlush = 3, CmdTrim = 4, CmdWriteZeroes = 6, CmdBlockStatus = 7;
    public const ushort FlagFua = 1, FlagNoHole = 2, FlagDf = 4, FlagReqOne = 8;

    public const ushort ChunkNone = 0, ChunkOffsetData = 1, ChunkBlockStatus = 5, ChunkError = 0x8001;
    public const ushort ReplyFlagDone = 1;

    public const uint EPerm = 1;

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

    public static byte[] MetaRequest(string name, params string[] queries)
    {
        var ms = new MemoryStream();
        void U32(uint v)
        {
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, v);
            ms.Write(b);
        }
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

    public static byte[] Option(uint option, byte[] data, ulong magic = IHaveOpt, uint? declaredLength = null)
    {
        var o = new byte[16 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(o, magic);
        BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(o.AsSpan(12), declaredLength ?? (uint)data.Length);
        data.CopyTo(o, 16);
        return o;
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

    public static byte[] U32(uint v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        return b;
    }
}

public sealed record OptionReply(uint Option, uint Type, byte[] Data)
{
    public bool IsError => (Type & 0x80000000) != 0;
}

/// <summary>Size and transmission flags from NBD_OPT_GO.</summary>
public sealed record GoResult(ulong Size, ushort Flags);

/// <summary>
/// A byte-level NBD client over TCP: every field written and read by hand, each read under a
/// timeout so a server that stops answering fails the test instead of hanging it.
/// </summary>
public sealed class RawNbdClient : IAsyncDisposable
{
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(15);

    private readonly NetworkStream _stream;

    private RawNbdClient(Socket socket)
    {
        Socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    public Socket Socket { get; }

    public static async Task<Socket> ConnectSocketAsync(int port)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await s.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        return s;
    }

    /// <summary>Greeting, fixed-newstyle client flags, optional structured replies and base:allocation, then NBD_OPT_GO.</summary>
    public static async Task<(RawNbdClient Client, GoResult Go)> OpenAsync(int port, string export, bool structured, bool allocation = false)
    {
        var c = new RawNbdClient(await ConnectSocketAsync(port));
        try
        {
            var greeting = await c.ReadExactAsync(18);
            Assert.Equal(Wire.NbdMagic, BinaryPrimitives.ReadUInt64BigEndian(greeting));
            Assert.Equal(Wire.IHaveOpt, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
            await c.SendAsync(Wire.U32(Wire.CFixed | Wire.CNoZeroes));
            if (structured)
                Assert.Equal(Wire.RepAck, (await c.OptionAsync(Wire.OptStructured, [])).Single().Type);
            if (allocation)
                Assert.Equal(Wire.RepAck, (await c.OptionAsync(Wire.OptSetMeta, Wire.MetaRequest(export, "base:allocation")))[^1].Type);
            var replies = await c.OptionAsync(Wire.OptGo, Wire.InfoRequest(export, Wire.InfoName, Wire.InfoDescription, Wire.InfoBlockSize));
            Assert.True(replies[^1].Type == Wire.RepAck, $"NBD_OPT_GO '{export}' refused: 0x{replies[^1].Type:x8} {Encoding.UTF8.GetString(replies[^1].Data)}");
            var info = replies.Single(r => r.Type == Wire.RepInfo && BinaryPrimitives.ReadUInt16BigEndian(r.Data) == Wire.InfoExport);
            return (c, new GoResult(BinaryPrimitives.ReadUInt64BigEndian(info.Data.AsSpan(2)), BinaryPrimitives.ReadUInt16BigEndian(info.Data.AsSpan(10))));
        }
        catch
        {
            await c.DisposeAsync();
            throw;
        }
    }

    public async Task SendAsync(byte[] bytes) => await _stream.WriteAsync(bytes);

    public async Task<List<OptionReply>> OptionAsync(uint option, byte[] data)
    {
        await SendAsync(Wire.Option(option, data));
        var replies = new List<OptionReply>();
        while (true)
        {
            var h = await ReadExactAsync(20);
            Assert.Equal(Wire.OptReplyMagic, BinaryPrimitives.ReadUInt64BigEndian(h));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
            Assert.True(length < 1 << 20, $"option reply of {length} bytes");
            var r = new OptionReply(BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12)), await ReadExactAsync((int)length));
            Assert.Equal(option, r.Option);
            replies.Add(r);
            if (r.Type == Wire.RepAck || r.IsError)
                return replies;
        }
    }

    /// <summary>A simple reply: error value and cookie (no structured replies negotiated).</summary>
    public async Task<(uint Error, ulong Cookie)> ReadSimpleReplyAsync()
    {
        var h = await ReadExactAsync(16);
        Assert.Equal(Wire.SimpleMagic, BinaryPrimitives.ReadUInt32BigEndian(h));
        return (BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(4)), BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8)));
    }

    public async Task<byte[]> ReadExactAsync(int length)
    {
        var buffer = new byte[length];
        using var cts = new CancellationTokenSource(ReadTimeout);
        await _stream.ReadExactlyAsync(buffer, cts.Token);
        return buffer;
    }

    public async ValueTask DisposeAsync() => await _stream.DisposeAsync();
}
