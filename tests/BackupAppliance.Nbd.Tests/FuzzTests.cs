using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using BackupAppliance.Core;
using BackupAppliance.Nbd.Tests.Support;
using Xunit.Abstractions;

namespace BackupAppliance.Nbd.Tests;

/// <summary>
/// Thousands of malformed and hostile messages from raw sockets, in both phases. The server must
/// answer well-formed replies or disconnect, never report an unexpected error, never act on a
/// request it should refuse (the checked exports keep their contents), and keep serving.
/// Seeded: set BAPP_NBD_FUZZ_SEED to replay a run; every failure names the seed and the case.
/// </summary>
public sealed class FuzzTests(NbdServerFixture f, ITestOutputHelper output) : IClassFixture<NbdServerFixture>
{
    private const int Workers = 4;
    private const int HandshakeCasesPerWorker = 300;
    private const int TransmissionCasesPerWorker = 300;
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(10);

    private static int Seed =>
        int.TryParse(Environment.GetEnvironmentVariable("BAPP_NBD_FUZZ_SEED"), out var s) ? s : 20261121;

    /// <summary>Exports whose contents are compared before and after; hostile requests there must all be refused.</summary>
    private static readonly string[] Checked = ["disk", "small", "ro"];

    [Fact]
    public async Task Hostile_clients_get_answers_or_disconnects_and_change_nothing()
    {
        int seed = Seed;
        var rng = new Random(seed);
        foreach (var (volume, at) in new (IBlockVolume, long)[] { (f.Disk, 0), (f.Disk, 300L << 20), (f.Small, 5L << 20) })
        {
            var data = new byte[1 << 20];
            rng.NextBytes(data);
            await volume.WriteAsync(at, data, false, CancellationToken.None);
        }
        var volumes = new (string Name, IBlockVolume Volume)[] { ("disk", f.Disk), ("small", f.Small), ("ro", f.RoBacking) };
        var before = new Dictionary<string, string>();
        foreach (var (name, volume) in volumes)
            before[name] = await VolumeDigest.ComputeAsync(volume);

        var workerSeeds = Enumerable.Range(0, Workers).Select(_ => rng.Next()).ToArray();
        var counts = await Task.WhenAll(workerSeeds.Select((s, w) => Task.Run(() => WorkerAsync(seed, w, s))));
        int messages = counts.Sum();
        output.WriteLine($"seed {seed}: {Workers * (HandshakeCasesPerWorker + TransmissionCasesPerWorker)} connections, {messages} messages");
        Assert.True(messages >= 10000, $"seed {seed}: only {messages} messages sent");

        foreach (var (name, volume) in volumes)
            Assert.True(before[name] == await VolumeDigest.ComputeAsync(volume), $"seed {seed}: export '{name}' changed");
        Assert.True(f.Faults.IsEmpty, $"seed {seed}: server reported unexpected errors:\n{string.Join("\n", f.Faults)}");

        // Still serving a normal client.
        var info = await Tool.RunAsync("nbdinfo", f.Uri("disk"));
        Assert.True(info.ExitCode == 0 && info.Stdout.Contains("export-size: 1073741824"), $"seed {seed}: {info}");
        var io = await Tool.RunAsync("qemu-io", "-f", "raw", f.Uri("scratch"), "-c", "write -P 0x77 0 1M", "-c", "read -P 0x77 0 1M");
        Assert.True(io.ExitCode == 0 && !io.Output.Contains("Pattern verification failed"), $"seed {seed}: {io}");

        // No connection leaks, and the accept loops stop cleanly.
        for (int i = 0; i < 500 && f.Server.ConnectionCount > 0; i++)
            await Task.Delay(10);
        Assert.True(f.Server.ConnectionCount == 0, $"seed {seed}: {f.Server.ConnectionCount} connections still open");
        await f.Server.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
    }

    private async Task<int> WorkerAsync(int seed, int worker, int workerSeed)
    {
        var rng = new Random(workerSeed);
        int messages = 0;
        for (int i = 0; i < HandshakeCasesPerWorker; i++)
            messages += await HandshakeCaseAsync(rng, $"seed {seed} worker {worker} handshake case {i}");
        for (int i = 0; i < TransmissionCasesPerWorker; i++)
            messages += await TransmissionCaseAsync(rng, $"seed {seed} worker {worker} transmission case {i}");
        return messages;
    }

    // ---------------- handshake phase ----------------

    private async Task<int> HandshakeCaseAsync(Random rng, string context)
    {
        using var socket = await ConnectAsync();
        var burst = new List<byte>();
        int messages = 0;
        int shape = rng.Next(10);
        if (shape == 0)
        {
            burst.AddRange(RandomBytes(rng, rng.Next(0, 300))); // garbage instead of client flags
            messages++;
        }
        else
        {
            uint flags = shape == 1 ? (uint)rng.Next() : rng.Next(4) == 0 ? Wire.CFixed : Wire.CFixed | Wire.CNoZeroes;
            burst.AddRange(U32(flags));
            messages++;
            int options = rng.Next(1, 12);
            for (int i = 0; i < options; i++, messages++)
                burst.AddRange(HostileOption(rng));
        }
        return messages + await SendThenFinishAsync(socket, rng, [.. burst], context, DrainHandshakeAsync);
    }

    private static byte[] HostileOption(Random rng)
    {
        switch (rng.Next(14))
        {
            case 0: return Wire.Option(Wire.OptList, []);
            case 1: return Wire.Option(Wire.OptList, RandomBytes(rng, rng.Next(1, 40)));
            case 2: return Wire.Option(Wire.OptStructured, rng.Next(2) == 0 ? [] : RandomBytes(rng, rng.Next(1, 10)));
            case 3: return Wire.Option(Wire.OptInfo, Wire.InfoRequest(Pick(rng, ["disk", "ro", "", "nope", "small"]), RandomInfos(rng)));
            case 4: return Wire.Option(Wire.OptGo, Wire.InfoRequest("missing-" + rng.Next(), RandomInfos(rng)));
            case 5: return Wire.Option(Pick(rng, [Wire.OptListMeta, Wire.OptSetMeta]), Wire.MetaRequest(Pick(rng, ["disk", "", "x"]), RandomQueries(rng)));
            case 6: return Wire.Option(Pick(rng, [Wire.OptListMeta, Wire.OptSetMeta, Wire.OptInfo, Wire.OptGo]), Mangle(rng, Wire.MetaRequest("disk", RandomQueries(rng))));
            case 7: return Wire.Option(Pick(rng, [Wire.OptInfo, Wire.OptGo]), Mangle(rng, Wire.InfoRequest("x" + rng.Next(), RandomInfos(rng))));
            case 8: return Wire.Option((uint)rng.Next(11, int.MaxValue), RandomBytes(rng, rng.Next(0, 200)));
            case 9: return Wire.Option(Wire.OptStartTls, []);
            case 10: // truncated: declares more than follows
                var data = RandomBytes(rng, rng.Next(0, 50));
                return Wire.Option((uint)rng.Next(0, 12), data, declaredLength: (uint)(data.Length + rng.Next(1, 5000)));
            case 11: // huge declared length
                return Wire.Option((uint)rng.Next(0, 12), [], declaredLength: (uint)rng.NextInt64(65537, uint.MaxValue));
            case 12: // wrong magic
                return Wire.Option(Wire.OptList, [], magic: (ulong)rng.NextInt64());
            default: // EXPORT_NAME of an export that does not exist (never the empty name: that would succeed)
                return Wire.Option(Wire.OptExportName, Encoding.UTF8.GetBytes("no-such-" + rng.Next()));
        }
    }

    /// <summary>After the greeting, everything the server sends in this phase must be a whole option reply.</summary>
    private static async Task DrainHandshakeAsync(Stream stream, string context)
    {
        var greeting = await ReadAsync(stream, 18, context, allowEofAtStart: false);
        if (greeting is null)
            return;
        Assert.True(BinaryPrimitives.ReadUInt64BigEndian(greeting) == Wire.NbdMagic, $"{context}: bad greeting");
        while (true)
        {
            var header = await ReadAsync(stream, 20, context, allowEofAtStart: true);
            if (header is null)
                return;
            Assert.True(BinaryPrimitives.ReadUInt64BigEndian(header) == Wire.OptReplyMagic, $"{context}: option reply magic {Convert.ToHexString(header)}");
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
            Assert.True(length <= 65536, $"{context}: option reply of {length} bytes");
            if (length > 0 && await ReadAsync(stream, (int)length, context, allowEofAtStart: false) is null)
                return;
        }
    }

    // ---------------- transmission phase ----------------

    private sealed record Sent(ushort Type, ulong Offset, uint Length, Expect Expect);

    private enum Expect { Any, Error, NoReply }

    private async Task<int> TransmissionCaseAsync(Random rng, string context)
    {
        string export = rng.Next(3) == 0 ? "scratch" : Pick(rng, Checked);
        bool structured = rng.Next(3) != 0, allocation = structured && rng.Next(2) == 0;
        var (client, go) = await RawNbdClient.OpenAsync(f.Port, export, structured, allocation);
        await using var _ = client;
        bool readOnly = (go.Flags & Wire.FReadOnly) != 0;
        long size = (long)go.Size;
        context += $" ({export}, structured {structured}, allocation {allocation})";

        var sent = new Dictionary<ulong, Sent>();
        var burst = new List<byte>();
        bool terminated = false;
        int count = rng.Next(1, 25);
        ulong cookie = (ulong)rng.NextInt64();
        for (int i = 0; i < count; i++)
        {
            cookie++;
            var (bytes, request) = export == "scratch"
                ? AnyRequest(rng, size, structured)
                : RefusedOrHarmlessRequest(rng, size, readOnly, structured);
            if (terminated)
                request = request with { Expect = Expect.NoReply };
            BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(8), cookie);
            sent[cookie] = request;
            burst.AddRange(bytes);
            if (request.Type == Wire.CmdDisc || request.Expect == Expect.NoReply && !terminated)
                terminated = true;
            if (terminated && export != "scratch" && rng.Next(2) == 0)
            {
                // Once the server has stopped reading, a perfectly valid write must not happen.
                cookie++;
                uint length = (uint)rng.Next(1, 4096);
                var write = Wire.Request(0, Wire.CmdWrite, cookie, (ulong)rng.NextInt64(0, size - length), length);
                sent[cookie] = new Sent(Wire.CmdWrite, 0, length, Expect.NoReply);
                burst.AddRange([.. write, .. RandomBytes(rng, (int)length)]);
                i++;
            }
        }
        return count + await SendThenFinishAsync(client.Socket, rng, [.. burst], context,
            (stream, ctx) => DrainTransmissionAsync(stream, structured, sent, ctx));
    }

    /// <summary>Requests for a checked export: each is harmless (read-only) or must be refused, or ends the connection.</summary>
    private static (byte[] Bytes, Sent Request) RefusedOrHarmlessRequest(Random rng, long size, bool readOnly, bool structured)
    {
        ulong inRangeOffset = (ulong)rng.NextInt64(0, size - 65536);
        uint smallLength = (uint)rng.Next(1, 65536);
        switch (rng.Next(13))
        {
            case 0:
                return Make(rng, structured && rng.Next(2) == 0 ? Wire.FlagDf : (ushort)0, Wire.CmdRead, inRangeOffset, smallLength, Expect.Any);
            case 1:
                return Make(rng, 0, Wire.CmdRead, OutOfRange(rng, size, smallLength), smallLength, Expect.Error);
            case 2:
                return Make(rng, RandomValidWriteFlags(rng), Wire.CmdWrite, OutOfRange(rng, size, smallLength), smallLength, Expect.Error);
            case 3:
                return Make(rng, InvalidFlags(rng, Wire.FlagFua), Wire.CmdWrite, inRangeOffset, smallLength, Expect.Error);
            case 4:
                return Make(rng, 0, Pick(rng, [Wire.CmdTrim, Wire.CmdWriteZeroes]), OutOfRange(rng, size, smallLength), smallLength, Expect.Error);
            case 5:
                return rng.Next(2) == 0
                    ? Make(rng, InvalidFlags(rng, Wire.FlagFua), Wire.CmdTrim, inRangeOffset, smallLength, Expect.Error)
                    : Make(rng, InvalidFlags(rng, Wire.FlagFua | Wire.FlagNoHole), Wire.CmdWriteZeroes, inRangeOffset, smallLength, Expect.Error);
            case 6:
                return Make(rng, 0, (ushort)Pick(rng, [5, 8, 9, 100, rng.Next(8, 65536)]), inRangeOffset, smallLength, Expect.Error);
            case 7:
                return Make(rng, rng.Next(2) == 0 ? Wire.FlagReqOne : (ushort)0, Wire.CmdBlockStatus, (ulong)rng.NextInt64(0, size + 10), (uint)rng.NextInt64(0, uint.MaxValue), Expect.Any);
            case 8:
                return rng.Next(2) == 0
                    ? Make(rng, 0, Wire.CmdFlush, 0, 0, Expect.Any)
                    : Make(rng, 0, Wire.CmdFlush, (ulong)rng.Next(1, 100), (uint)rng.Next(0, 100), Expect.Error);
            case 9:
                return Make(rng, 0, Pick(rng, [Wire.CmdRead, Wire.CmdWrite, Wire.CmdTrim, Wire.CmdWriteZeroes]), inRangeOffset, 0, Expect.Error);
            case 10:
                // On a writable checked export an in-range write would change it, so only the read-only one gets these.
                return readOnly
                    ? Make(rng, RandomValidWriteFlags(rng), Pick(rng, [Wire.CmdWrite, Wire.CmdTrim, Wire.CmdWriteZeroes]), inRangeOffset, smallLength, Expect.Error)
                    : Make(rng, Wire.FlagDf | Wire.FlagReqOne, Wire.CmdWrite, inRangeOffset, smallLength, Expect.Error);
            default:
                return Terminal(rng, size);
        }
    }

    /// <summary>Anything at all, for the unchecked scratch export.</summary>
    private static (byte[] Bytes, Sent Request) AnyRequest(Random rng, long size, bool structured)
    {
        if (rng.Next(12) == 0)
            return Terminal(rng, size);
        ushort type = rng.Next(4) == 0 ? (ushort)rng.Next(0, 12) : Pick(rng, [Wire.CmdRead, Wire.CmdWrite, Wire.CmdTrim, Wire.CmdWriteZeroes, Wire.CmdBlockStatus, Wire.CmdFlush]);
        if (type == Wire.CmdDisc)
            return Terminal(rng, size);
        ushort flags = rng.Next(3) == 0 ? (ushort)rng.Next(0, 65536) : (ushort)rng.Next(0, 32);
        uint length = (uint)(rng.Next(0, 3) switch { 0 => rng.Next(0, 512), 1 => rng.Next(0, 256 << 10), _ => rng.Next(0, 2 << 20) });
        if (type == Wire.CmdWrite)
            length = Math.Min(length, 256u << 10); // keep payloads small; oversize writes are terminal cases
        ulong offset = rng.Next(4) == 0 ? OutOfRange(rng, size, Math.Max(length, 1)) : (ulong)rng.NextInt64(0, size);
        return Make(rng, flags, type, offset, length, Expect.Any);
    }

    /// <summary>Requests after which the server reads nothing more.</summary>
    private static (byte[] Bytes, Sent Request) Terminal(Random rng, long size)
    {
        switch (rng.Next(4))
        {
            case 0:
                return (Wire.Request(0, Wire.CmdDisc, 0, 0, 0), new Sent(Wire.CmdDisc, 0, 0, Expect.NoReply));
            case 1:
                var bad = Wire.Request(0, Wire.CmdRead, 0, 0, 512, magic: (uint)rng.Next());
                return (bad, new Sent(Wire.CmdRead, 0, 512, Expect.NoReply));
            case 2:
                // Oversize write: only the header is sent, the server must not wait for the payload.
                uint huge = (uint)rng.NextInt64((32 << 20) + 1, uint.MaxValue);
                return (Wire.Request(0, Wire.CmdWrite, 0, 0, huge), new Sent(Wire.CmdWrite, 0, huge, Expect.NoReply));
            default:
                uint big = (uint)rng.NextInt64((32 << 20) + 1, uint.MaxValue);
                return (Wire.Request(0, Wire.CmdRead, 0, (ulong)rng.NextInt64(0, size), big), new Sent(Wire.CmdRead, 0, big, Expect.NoReply));
        }
    }

    private static (byte[] Bytes, Sent Request) Make(Random rng, ushort flags, ushort type, ulong offset, uint length, Expect expect)
    {
        var header = Wire.Request(flags, type, 0, offset, length);
        var bytes = type == Wire.CmdWrite ? [.. header, .. RandomBytes(rng, (int)length)] : header;
        return (bytes, new Sent(type, offset, length, expect));
    }

    /// <summary>
    /// Every reply must be well formed and answer a request that was sent, once; refused requests
    /// must get an error; requests after a terminal one must get nothing.
    /// </summary>
    private static async Task DrainTransmissionAsync(Stream stream, bool structured, Dictionary<ulong, Sent> sent, string context)
    {
        var answered = new HashSet<ulong>();
        while (true)
        {
            var header = await ReadAsync(stream, structured ? 20 : 16, context, allowEofAtStart: true);
            if (header is null)
                return;
            uint magic = BinaryPrimitives.ReadUInt32BigEndian(header);
            ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
            Assert.True(sent.TryGetValue(cookie, out var request), $"{context}: reply for unknown cookie {cookie}");
            Assert.True(answered.Add(cookie), $"{context}: cookie {cookie} answered twice");
            Assert.True(request.Expect != Expect.NoReply, $"{context}: reply to cookie {cookie}, sent after the server should have stopped reading");
            if (structured)
            {
                Assert.True(magic == Wire.StructuredMagic, $"{context}: magic 0x{magic:x8}");
                ushort flags = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4)), type = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6));
                uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(16));
                Assert.True(flags == Wire.ReplyFlagDone, $"{context}: chunk flags {flags}");
                bool valid = type switch
                {
                    Wire.ChunkNone => length == 0 && request.Type != Wire.CmdRead && request.Type != Wire.CmdBlockStatus,
                    Wire.ChunkOffsetData => request.Type == Wire.CmdRead && length == 8 + request.Length,
                    Wire.ChunkBlockStatus => request.Type == Wire.CmdBlockStatus && length >= 12 && (length - 4) % 8 == 0,
                    Wire.ChunkError => length >= 6 && length <= 6 + 1024,
                    _ => false,
                };
                Assert.True(valid, $"{context}: chunk type {type} length {length} for request {request}");
                Assert.True(request.Expect != Expect.Error || type == Wire.ChunkError, $"{context}: request {request} should have been refused");
                var payload = await ReadAsync(stream, (int)length, context, allowEofAtStart: length == 0);
                if (payload is null)
                    return;
                if (type == Wire.ChunkError)
                    Assert.True(BinaryPrimitives.ReadUInt32BigEndian(payload) != 0, $"{context}: error chunk with error 0");
                if (type == Wire.ChunkOffsetData)
                    Assert.True(BinaryPrimitives.ReadUInt64BigEndian(payload) == request.Offset, $"{context}: data at the wrong offset");
            }
            else
            {
                Assert.True(magic == Wire.SimpleMagic, $"{context}: magic 0x{magic:x8}");
                uint error = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
                Assert.True(request.Expect != Expect.Error || error != 0, $"{context}: request {request} should have been refused");
                if (error == 0 && request.Type == Wire.CmdRead && await ReadAsync(stream, (int)request.Length, context, allowEofAtStart: false) is null)
                    return;
            }
        }
    }

    // ---------------- plumbing ----------------

    /// <summary>
    /// Sends the burst, then either half-closes and checks everything that comes back until the
    /// server closes, or (sometimes) cuts the connection mid-message. Returns extra messages counted.
    /// </summary>
    private static async Task<int> SendThenFinishAsync(Socket socket, Random rng, byte[] burst, string context, Func<Stream, string, Task> drain)
    {
        int ending = rng.Next(10);
        if (ending == 0)
        {
            // Abrupt: part of the burst, then a reset.
            await TrySendAsync(socket, burst.AsMemory(0, rng.Next(0, burst.Length + 1)));
            socket.LingerState = new LingerOption(true, 0);
            socket.Close();
            return 0;
        }
        var stream = new NetworkStream(socket, ownsSocket: false);
        var draining = Task.Run(() => drain(stream, context));
        int cut = ending == 1 ? rng.Next(0, burst.Length + 1) : burst.Length; // sometimes a truncated message, then end of stream
        await TrySendAsync(socket, burst.AsMemory(0, cut));
        try
        {
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException)
        {
        }
        try
        {
            await draining.WaitAsync(DrainTimeout);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"{context}: the server neither answered nor closed within {DrainTimeout}");
        }
        return 0;
    }

    private static async Task TrySendAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        try
        {
            while (data.Length > 0)
            {
                int n = await socket.SendAsync(data);
                data = data[n..];
            }
        }
        catch (SocketException)
        {
            // The server hung up first: allowed.
        }
    }

    /// <summary>
    /// Reads exactly <paramref name="length"/> bytes; null if the server closed (cleanly at a
    /// message boundary where <paramref name="allowEofAtStart"/>, or by reset anywhere). A clean
    /// close in the middle of a message means the server sent half a reply: a failure.
    /// </summary>
    private static async Task<byte[]?> ReadAsync(Stream stream, int length, string context, bool allowEofAtStart)
    {
        var buffer = new byte[length];
        int got = 0;
        try
        {
            while (got < length)
            {
                int n = await stream.ReadAsync(buffer.AsMemory(got));
                if (n == 0)
                {
                    Assert.True(got == 0 && allowEofAtStart, $"{context}: connection closed {got} bytes into a {length}-byte message");
                    return null;
                }
                got += n;
            }
        }
        catch (IOException)
        {
            return null; // reset: the server dropped us, unread bytes and all
        }
        return buffer;
    }

    private async Task<Socket> ConnectAsync()
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await s.ConnectAsync(new IPEndPoint(IPAddress.Loopback, f.Port));
        return s;
    }

    private static ulong OutOfRange(Random rng, long size, uint length) => rng.Next(4) switch
    {
        0 => (ulong)(size - length + rng.Next(1, (int)Math.Min(length, int.MaxValue) + 1)), // straddles the end
        1 => (ulong)size + (ulong)rng.Next(0, 1 << 20),
        2 => ulong.MaxValue - (ulong)rng.Next(0, 1 << 20),                               // offset + length wraps
        _ => (ulong)rng.NextInt64(size, long.MaxValue),
    };

    private static ushort RandomValidWriteFlags(Random rng) => rng.Next(2) == 0 ? Wire.FlagFua : (ushort)0;

    private static ushort InvalidFlags(Random rng, ushort allowed)
    {
        ushort flags;
        do
            flags = (ushort)rng.Next(1, 65536);
        while ((flags & ~allowed) == 0);
        return flags;
    }

    private static ushort[] RandomInfos(Random rng) => Enumerable.Range(0, rng.Next(0, 6)).Select(_ => (ushort)rng.Next(0, 8)).ToArray();

    private static string[] RandomQueries(Random rng) =>
        Enumerable.Range(0, rng.Next(0, 5)).Select(_ => Pick(rng, ["base:", "base:allocation", "qemu:dirty-bitmap:x", "nonsense", "", "base:allocation:extra", "x-y:z"])).ToArray();

    /// <summary>Truncates, extends or corrupts one field of otherwise valid option data.</summary>
    private static byte[] Mangle(Random rng, byte[] data)
    {
        var d = (byte[])data.Clone();
        switch (rng.Next(4))
        {
            case 0: return d[..rng.Next(0, d.Length + 1)];
            case 1: return [.. d, .. RandomBytes(rng, rng.Next(1, 20))];
            case 2:
                if (d.Length >= 4)
                    BinaryPrimitives.WriteUInt32BigEndian(d, (uint)rng.Next());
                return d;
            default:
                if (d.Length > 0)
                    d[rng.Next(d.Length)] = (byte)rng.Next(256);
                return d;
        }
    }

    private static byte[] RandomBytes(Random rng, int length)
    {
        var b = new byte[length];
        rng.NextBytes(b);
        return b;
    }

    private static byte[] U32(uint v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        return b;
    }

    private static T Pick<T>(Random rng, T[] items) => items[rng.Next(items.Length)];
}
