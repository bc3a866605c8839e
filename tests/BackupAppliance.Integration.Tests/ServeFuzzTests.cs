using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using BackupAppliance.Integration.Tests.Support;
using Xunit.Abstractions;

namespace BackupAppliance.Integration.Tests;

/// <summary>
/// "target" and "other" imported from random images (with a zero run each); "target-snap" a
/// snapshot of target, so fuzzed writes to target must break sharing and leave the snapshot alone.
/// </summary>
public sealed class FuzzPool() : PoolServer(new PoolSpec("512M", []), "fuzz")
{
    public const long Size = 64L << 20;

    public string TargetImage => Scratch.File("target.raw");
    public string OtherImage => Scratch.File("other.raw");

    protected override async Task SetUpAsync()
    {
        await WriteImageAsync(TargetImage, seed: 1);
        await WriteImageAsync(OtherImage, seed: 2);
        await BappOkAsync("vol", "import", "target", "--from", TargetImage);
        await BappOkAsync("vol", "import", "other", "--from", OtherImage);
        await BappOkAsync("vol", "snapshot", "target", "target-snap");
    }

    private static async Task WriteImageAsync(string path, int seed)
    {
        var data = new byte[Size];
        new Random(seed).NextBytes(data);
        data.AsSpan(16 << 20, 8 << 20).Clear(); // left unprovisioned by the import
        await File.WriteAllBytesAsync(path, data);
    }
}

/// <summary>
/// Acceptance 8: a few hundred seeded hostile raw-TCP connections against <c>bapp serve</c> on a
/// pool (garbage, bad magics, truncated and oversized options and requests, out-of-range offsets,
/// writes to the snapshot export); in-range writes go to "target" only. Every reply must be well
/// formed, every request that must be refused is refused, the server keeps serving, "other" and
/// the snapshot keep their sha256, and the pool's metadata passes thin_check afterwards.
/// A smaller cousin of tests/BackupAppliance.Nbd.Tests/FuzzTests.cs, which runs on in-memory volumes.
/// Seeded: BAPP_IT_FUZZ_SEED=n replays a run; failures name the seed, worker and case.
/// </summary>
public sealed class ServeFuzzTests(FuzzPool pool, ITestOutputHelper output) : IClassFixture<FuzzPool>
{
    private const int Workers = 4;
    private const int HandshakeCasesPerWorker = 40;
    private const int TransmissionCasesPerWorker = 60;
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(15);

    private static readonly string[] Checked = ["other", "target-snap"];

    private static int Seed => int.TryParse(Environment.GetEnvironmentVariable("BAPP_IT_FUZZ_SEED"), out var s) ? s : 20261122;

    [Fact]
    public async Task Hostile_connections_change_nothing_they_should_not_and_the_pool_stays_consistent()
    {
        int seed = Seed;
        string otherSha = await Sha.FileAsync(pool.OtherImage), snapSha = await Sha.FileAsync(pool.TargetImage);
        Assert.Equal(otherSha, await ExportShaAsync("other"));
        Assert.Equal(snapSha, await ExportShaAsync("target-snap"));

        var rng = new Random(seed);
        var workerSeeds = Enumerable.Range(0, Workers).Select(_ => rng.Next()).ToArray();
        var counts = await Task.WhenAll(workerSeeds.Select((s, w) => Task.Run(() => WorkerAsync(seed, w, s))));
        int messages = counts.Sum();
        output.WriteLine($"seed {seed}: {Workers * (HandshakeCasesPerWorker + TransmissionCasesPerWorker)} connections, {messages} messages");
        Assert.True(messages >= 2000, $"seed {seed}: only {messages} messages sent");

        // Still serving ordinary clients, with the same exports.
        var listed = await NbdInfo.ListAsync(pool.ListUri);
        Assert.Equal(["other", "target", "target-snap"], listed.Select(e => e.Name).Order());
        Assert.All(listed, e => Assert.Equal(FuzzPool.Size, e.Size));
        var io = await QemuIo.RunAsync(pool.Uri("target"), "write -P 0x77 1M 1M", "read -P 0x77 1M 1M");
        QemuIo.AssertVerified(io, QemuIo.Read(1 << 20, 1 << 20));

        Assert.True(otherSha == await ExportShaAsync("other"), $"seed {seed}: export 'other' changed");
        Assert.True(snapSha == await ExportShaAsync("target-snap"), $"seed {seed}: export 'target-snap' changed");
        pool.AssertNoUnexpectedErrors();

        await pool.StopAsync();
        await pool.ThinCheckAsync();
        await pool.PoolCheckAsync();
        // The committed pool agrees: the CLI's export of the untouched volume is the original image.
        string exported = pool.Scratch.File("other.exported");
        await pool.BappOkAsync("vol", "export", "other", "--to", exported);
        Assert.Equal(otherSha, await Sha.FileAsync(exported));
        await pool.StartAsync();
    }

    private async Task<string> ExportShaAsync(string export)
    {
        string file = pool.Scratch.File($"{export}-{Guid.NewGuid():N}.raw");
        await Tool.RunOkAsync("nbdcopy", pool.Uri(export), file);
        try
        {
            return await Sha.FileAsync(file);
        }
        finally
        {
            File.Delete(file);
        }
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
        using var socket = await RawNbdClient.ConnectSocketAsync(pool.Port);
        var burst = new List<byte>();
        int messages = 1;
        if (rng.Next(10) == 0)
        {
            burst.AddRange(RandomBytes(rng, rng.Next(0, 300))); // garbage instead of client flags
        }
        else
        {
            burst.AddRange(Wire.U32(rng.Next(8) == 0 ? (uint)rng.Next() : Wire.CFixed | Wire.CNoZeroes));
            int options = rng.Next(1, 12);
            for (int i = 0; i < options; i++, messages++)
                burst.AddRange(HostileOption(rng));
        }
        await SendThenFinishAsync(socket, rng, [.. burst], context, DrainHandshakeAsync);
        return messages;
    }

    private static byte[] HostileOption(Random rng)
    {
        switch (rng.Next(13))
        {
            case 0: return Wire.Option(Wire.OptList, rng.Next(2) == 0 ? [] : RandomBytes(rng, rng.Next(1, 40)));
            case 1: return Wire.Option(Wire.OptStructured, rng.Next(2) == 0 ? [] : RandomBytes(rng, rng.Next(1, 10)));
            case 2: return Wire.Option(Wire.OptInfo, Wire.InfoRequest(Pick(rng, ["target", "other", "target-snap", "", "nope"]), RandomInfos(rng)));
            case 3: return Wire.Option(Wire.OptGo, Wire.InfoRequest("missing-" + rng.Next(), RandomInfos(rng)));
            case 4: return Wire.Option(Pick(rng, [Wire.OptListMeta, Wire.OptSetMeta]), Wire.MetaRequest(Pick(rng, ["target", "", "x"]), RandomQueries(rng)));
            case 5: return Wire.Option(Pick(rng, [Wire.OptListMeta, Wire.OptSetMeta, Wire.OptInfo, Wire.OptGo]), Mangle(rng, Wire.MetaRequest("other", RandomQueries(rng))));
            case 6: return Wire.Option(Pick(rng, [Wire.OptInfo, Wire.OptGo]), Mangle(rng, Wire.InfoRequest("x" + rng.Next(), RandomInfos(rng))));
            case 7: return Wire.Option((uint)rng.Next(11, int.MaxValue), RandomBytes(rng, rng.Next(0, 200)));
            case 8: return Wire.Option(Wire.OptStartTls, []);
            case 9: // truncated: declares more than follows
                var data = RandomBytes(rng, rng.Next(0, 50));
                return Wire.Option((uint)rng.Next(0, 12), data, declaredLength: (uint)(data.Length + rng.Next(1, 5000)));
            case 10: // oversized declared length
                return Wire.Option((uint)rng.Next(0, 12), [], declaredLength: (uint)rng.NextInt64(65537, uint.MaxValue));
            case 11: // bad magic
                return Wire.Option(Wire.OptList, [], magic: (ulong)rng.NextInt64());
            default: // EXPORT_NAME of an export that does not exist
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
        string export = rng.Next(3) == 0 ? "target" : Pick(rng, Checked);
        bool structured = rng.Next(3) != 0, allocation = structured && rng.Next(2) == 0;
        var (client, go) = await RawNbdClient.OpenAsync(pool.Port, export, structured, allocation);
        await using var _ = client;
        bool readOnly = (go.Flags & Wire.FReadOnly) != 0;
        Assert.True(readOnly == (export == "target-snap"), $"{context}: export {export} read-only flag {readOnly}");
        long size = (long)go.Size;
        Assert.Equal(FuzzPool.Size, size);
        context += $" ({export}, structured {structured}, allocation {allocation})";

        var sent = new Dictionary<ulong, Sent>();
        var burst = new List<byte>();
        bool terminated = false;
        int count = rng.Next(1, 25);
        ulong cookie = (ulong)rng.NextInt64();
        for (int i = 0; i < count; i++)
        {
            cookie++;
            var (bytes, request) = export == "target" ? AnyRequest(rng, size) : RefusedOrHarmlessRequest(rng, size, readOnly, structured);
            if (terminated)
                request = request with { Expect = Expect.NoReply };
            BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(8), cookie);
            sent[cookie] = request;
            burst.AddRange(bytes);
            if (request.Type == Wire.CmdDisc || request.Expect == Expect.NoReply)
                terminated = true;
            if (terminated && export != "target" && rng.Next(2) == 0)
            {
                // Once the server has stopped reading, even a valid write must not happen.
                cookie++;
                uint length = (uint)rng.Next(1, 4096);
                var write = Wire.Request(0, Wire.CmdWrite, cookie, (ulong)rng.NextInt64(0, size - length), length);
                sent[cookie] = new Sent(Wire.CmdWrite, 0, length, Expect.NoReply);
                burst.AddRange([.. write, .. RandomBytes(rng, (int)length)]);
                i++;
            }
        }
        await SendThenFinishAsync(client.Socket, rng, [.. burst], context, (stream, ctx) => DrainTransmissionAsync(stream, structured, sent, ctx));
        return count;
    }

    /// <summary>For a checked export: harmless (reads, block status, flush) or must be refused, or ends the connection.</summary>
    private static (byte[] Bytes, Sent Request) RefusedOrHarmlessRequest(Random rng, long size, bool readOnly, bool structured)
    {
        ulong inRange = (ulong)rng.NextInt64(0, size - 65536);
        uint small = (uint)rng.Next(1, 65536);
        switch (rng.Next(12))
        {
            case 0:
                return Make(rng, structured && rng.Next(2) == 0 ? Wire.FlagDf : (ushort)0, Wire.CmdRead, inRange, small, Expect.Any);
            case 1:
                return Make(rng, 0, Wire.CmdRead, OutOfRange(rng, size, small), small, Expect.Error);
            case 2:
                return Make(rng, rng.Next(2) == 0 ? Wire.FlagFua : (ushort)0, Wire.CmdWrite, OutOfRange(rng, size, small), small, Expect.Error);
            case 3:
                return Make(rng, InvalidFlags(rng, Wire.FlagFua), Wire.CmdWrite, inRange, small, Expect.Error);
            case 4:
                return Make(rng, 0, Pick(rng, [Wire.CmdTrim, Wire.CmdWriteZeroes]), OutOfRange(rng, size, small), small, Expect.Error);
            case 5:
                return rng.Next(2) == 0
                    ? Make(rng, InvalidFlags(rng, Wire.FlagFua), Wire.CmdTrim, inRange, small, Expect.Error)
                    : Make(rng, InvalidFlags(rng, Wire.FlagFua | Wire.FlagNoHole), Wire.CmdWriteZeroes, inRange, small, Expect.Error);
            case 6:
                return Make(rng, 0, (ushort)Pick(rng, [5, 8, 9, 100, rng.Next(8, 65536)]), inRange, small, Expect.Error);
            case 7:
                return Make(rng, rng.Next(2) == 0 ? Wire.FlagReqOne : (ushort)0, Wire.CmdBlockStatus, (ulong)rng.NextInt64(0, size + 10), (uint)rng.NextInt64(0, uint.MaxValue), Expect.Any);
            case 8:
                return Make(rng, 0, Wire.CmdFlush, 0, 0, Expect.Any);
            case 9:
            case 10:
                // The snapshot gets perfectly valid in-range writes, trims and zeroes: all must be refused.
                return readOnly
                    ? Make(rng, rng.Next(2) == 0 ? Wire.FlagFua : (ushort)0, Pick(rng, [Wire.CmdWrite, Wire.CmdTrim, Wire.CmdWriteZeroes]), inRange, small, Expect.Error)
                    : Make(rng, Wire.FlagDf | Wire.FlagReqOne, Wire.CmdWrite, inRange, small, Expect.Error);
            default:
                return Terminal(rng, size);
        }
    }

    /// <summary>Anything at all, for "target": in-range writes, trims and zeroes included.</summary>
    private static (byte[] Bytes, Sent Request) AnyRequest(Random rng, long size)
    {
        if (rng.Next(12) == 0)
            return Terminal(rng, size);
        ushort type = rng.Next(4) == 0 ? (ushort)rng.Next(0, 12) : Pick(rng, [Wire.CmdRead, Wire.CmdWrite, Wire.CmdTrim, Wire.CmdWriteZeroes, Wire.CmdBlockStatus, Wire.CmdFlush]);
        if (type == Wire.CmdDisc)
            return Terminal(rng, size);
        ushort flags = rng.Next(3) == 0 ? (ushort)rng.Next(0, 65536) : (ushort)rng.Next(0, 32);
        uint length = (uint)(rng.Next(0, 3) switch { 0 => rng.Next(0, 512), 1 => rng.Next(0, 256 << 10), _ => rng.Next(0, 2 << 20) });
        if (type == Wire.CmdWrite)
            length = Math.Min(length, 256u << 10);
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
                return (Wire.Request(0, Wire.CmdRead, 0, 0, 512, magic: (uint)rng.Next()), new Sent(Wire.CmdRead, 0, 512, Expect.NoReply));
            case 2:
                // Oversized write: only the header is sent; the server must not wait for the payload.
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

    /// <summary>Every reply well formed and answering a request sent, once; refusals are errors; nothing after a terminal request.</summary>
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

    /// <summary>Sends the burst, then half-closes and checks all that comes back until the server closes; sometimes cuts the connection mid-message instead.</summary>
    private static async Task SendThenFinishAsync(Socket socket, Random rng, byte[] burst, string context, Func<Stream, string, Task> drain)
    {
        int ending = rng.Next(10);
        if (ending == 0)
        {
            await TrySendAsync(socket, burst.AsMemory(0, rng.Next(0, burst.Length + 1)));
            socket.LingerState = new LingerOption(true, 0);
            socket.Close(); // reset
            return;
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
            Assert.Fail($"{context}: the server neither answered nor closed within {DrainTimeout.TotalSeconds} s");
        }
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

    /// <summary>Exactly <paramref name="length"/> bytes, or null when the server closed; a clean close inside a message is a failure.</summary>
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
            return null; // reset: the server dropped us
        }
        return buffer;
    }

    private static ulong OutOfRange(Random rng, long size, uint length) => rng.Next(4) switch
    {
        0 => (ulong)(size - length + rng.Next(1, (int)Math.Min(length, int.MaxValue) + 1)), // straddles the end
        1 => (ulong)size + (ulong)rng.Next(0, 1 << 20),
        2 => ulong.MaxValue - (ulong)rng.Next(0, 1 << 20),                               // offset + length wraps
        _ => (ulong)rng.NextInt64(size, long.MaxValue),
    };

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
        Enumerable.Range(0, rng.Next(0, 5)).Select(_ => Pick(rng, ["base:", "base:allocation", "qemu:dirty-bitmap:x", "nonsense", "", "base:allocation:extra"])).ToArray();

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

    private static T Pick<T>(Random rng, T[] items) => items[rng.Next(items.Length)];
}
