using System.Buffers.Binary;
using System.Net;
using BackupAppliance.Core;
using BackupAppliance.Nbd.Tests.Support;

namespace BackupAppliance.Nbd.Tests;

/// <summary>The transmission phase byte by byte, each test on a server and volumes of its own.</summary>
public sealed class TransmissionTests
{
    private const long Size = 16L << 20;

    private static InstrumentedVolume NewVolume(string name = "vol", bool readOnly = false) =>
        new(readOnly ? new ReadOnlyView(new MemoryBlockVolume(name, Size, 65536)) : new MemoryBlockVolume(name, Size, 65536));

    private static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    [Fact]
    public async Task Simple_replies_carry_the_cookie_and_read_data()
    {
        var vol = NewVolume();
        await using var server = await TestServer.StartAsync(vol);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: false);
        await using var _c = c;
        var data = Pattern(4096, 1);

        await c.SendRequestAsync(0, Wire.CmdWrite, 0x1122334455667788, 8192, 4096, data);
        var w = await c.ReadSimpleReplyAsync();
        Assert.Equal((0u, 0x1122334455667788ul), (w.Error, w.Cookie));

        await c.SendRequestAsync(0, Wire.CmdRead, 42, 8192, 4096);
        var r = await c.ReadSimpleReplyAsync(4096);
        Assert.Equal((0u, 42ul), (r.Error, r.Cookie));
        Assert.Equal(data, r.Data);

        await c.SendRequestAsync(0, Wire.CmdFlush, 43, 0, 0);
        var flush = await c.ReadSimpleReplyAsync();
        Assert.Equal((0u, 43ul), (flush.Error, flush.Cookie));
        Assert.Empty(server.Faults);
    }

    [Fact]
    public async Task Structured_read_is_one_final_offset_data_chunk_and_other_commands_a_none_chunk()
    {
        var vol = NewVolume();
        await using var server = await TestServer.StartAsync(vol);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: true);
        await using var _c = c;
        var data = Pattern(10000, 2);

        await c.SendRequestAsync(0, Wire.CmdWrite, 1, 123457, (uint)data.Length, data);
        var none = await c.ReadChunkAsync();
        Assert.Equal((Wire.ChunkNone, 1ul, true, 0), (none.Type, none.Cookie, none.Done, none.Payload.Length));

        await c.SendRequestAsync(Wire.FlagDf, Wire.CmdRead, 2, 123457, (uint)data.Length);
        var chunk = await c.ReadChunkAsync();
        Assert.Equal((Wire.ChunkOffsetData, 2ul, true), (chunk.Type, chunk.Cookie, chunk.Done));
        Assert.Equal(123457ul, BinaryPrimitives.ReadUInt64BigEndian(chunk.Payload));
        Assert.Equal(data, chunk.Payload[8..]);
    }

    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 65536)]
    [InlineData(false, 65537)]
    [InlineData(false, (1 << 20) + 3)]
    [InlineData(false, 32 << 20)]
    [InlineData(true, 1)]
    [InlineData(true, 65536)]
    [InlineData(true, 65537)]
    [InlineData(true, (1 << 20) + 3)]
    [InlineData(true, 32 << 20)]
    public async Task Reads_small_and_large_return_exactly_the_data(bool structured, int length)
    {
        var vol = new InstrumentedVolume(new MemoryBlockVolume("big", 64L << 20, 65536));
        var data = Pattern(length, length);
        await vol.WriteAsync(777, data, false, CancellationToken.None);
        await using var server = await TestServer.StartAsync(vol);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "big", structured);
        await using var _c = c;

        await c.SendRequestAsync(0, Wire.CmdRead, 5, 777, (uint)length);
        byte[] got;
        if (structured)
        {
            // Structured replies frame themselves, so another request may be in flight beside the read.
            await c.SendRequestAsync(0, Wire.CmdFlush, 6, 0, 0);
            var chunk = await c.ReadChunkAsync();
            if (chunk.Cookie == 6)
                chunk = await c.ReadChunkAsync();
            Assert.Equal((Wire.ChunkOffsetData, 5ul, 777ul), (chunk.Type, chunk.Cookie, BinaryPrimitives.ReadUInt64BigEndian(chunk.Payload)));
            got = chunk.Payload[8..];
        }
        else
        {
            // A simple reply's data is framed only by the request, so nothing else is in flight here.
            var reply = await c.ReadSimpleReplyAsync(length);
            Assert.Equal((0u, 5ul), (reply.Error, reply.Cookie));
            got = reply.Data;
        }
        Assert.True(data.AsSpan().SequenceEqual(got), "read data differs");
    }

    public static TheoryData<string, uint, bool> Failures => new()
    {
        { "NoSpace", Wire.ENoSpc, false },
        { "ReadOnly", Wire.EPerm, false },
        { "InvalidArgument", Wire.EInval, false },
        { "IoError", Wire.EIo, false },
        { "other", Wire.EIo, true },
    };

    [Theory]
    [MemberData(nameof(Failures))]
    public async Task Volume_errors_map_to_nbd_errors(string failure, uint expected, bool unexpected)
    {
        var vol = NewVolume();
        Exception Make() => failure == "other"
            ? new InvalidOperationException("secret internal detail")
            : new VolumeException(Enum.Parse<VolumeError>(failure), $"volume says {failure}");
        vol.Fault = call => call.Op is "write" or "read" or "zero" ? Make() : null;
        await using var server = await TestServer.StartAsync(vol);

        var (simple, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: false);
        await using (simple)
        {
            await simple.SendRequestAsync(0, Wire.CmdWrite, 10, 0, 512, new byte[512]);
            var w = await simple.ReadSimpleReplyAsync();
            Assert.Equal((expected, 10ul), (w.Error, w.Cookie));
            await simple.SendRequestAsync(0, Wire.CmdRead, 11, 0, 512);
            var r = await simple.ReadSimpleReplyAsync(512);
            Assert.Equal((expected, 11ul), (r.Error, r.Cookie));
            Assert.Empty(r.Data); // no payload after an error
            // The stream is still in step.
            await simple.SendRequestAsync(0, Wire.CmdFlush, 12, 0, 0);
            var flush = await simple.ReadSimpleReplyAsync();
            Assert.Equal((0u, 12ul), (flush.Error, flush.Cookie));
        }

        var (structured, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: true);
        await using (structured)
        {
            await structured.SendRequestAsync(0, Wire.CmdWriteZeroes, 20, 0, 65536);
            var e = await structured.ReadChunkAsync();
            Assert.Equal((Wire.ChunkError, 20ul, true, expected), (e.Type, e.Cookie, e.Done, e.Error));
            if (unexpected)
                Assert.Equal("I/O error", e.ErrorMessage);
            else
                Assert.Equal($"volume says {failure}", e.ErrorMessage);

            await structured.SendRequestAsync(0, Wire.CmdRead, 21, 0, 4096);
            var re = await structured.ReadChunkAsync();
            Assert.Equal((Wire.ChunkError, 21ul, true, expected), (re.Type, re.Cookie, re.Done, re.Error));
        }
        // Only failures outside the volume contract are reported to the host.
        Assert.Equal(unexpected ? 4 : 0, server.Faults.Count);
    }

    [Fact]
    public async Task Fua_and_no_hole_reach_the_volume()
    {
        var vol = NewVolume();
        await using var server = await TestServer.StartAsync(vol);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: true);
        await using var _c = c;

        await c.SendRequestAsync(Wire.FlagFua, Wire.CmdWrite, 1, 0, 512, new byte[512]);
        await c.SendRequestAsync(0, Wire.CmdWrite, 2, 65536, 512, new byte[512]);
        await c.SendRequestAsync(Wire.FlagFua, Wire.CmdTrim, 3, 131072, 65536);
        await c.SendRequestAsync(Wire.FlagFua | Wire.FlagNoHole, Wire.CmdWriteZeroes, 4, 262144, 65536);
        await c.SendRequestAsync(0, Wire.CmdWriteZeroes, 5, 393216, 65536);
        await c.SendRequestAsync(0, Wire.CmdFlush, 6, 0, 0);
        var cookies = new List<ulong>();
        for (int i = 0; i < 6; i++)
        {
            var chunk = await c.ReadChunkAsync();
            Assert.Equal(Wire.ChunkNone, chunk.Type);
            cookies.Add(chunk.Cookie);
        }
        Assert.Equal([1ul, 2, 3, 4, 5, 6], cookies.Order().ToArray());

        var calls = vol.Calls;
        Assert.Contains(new VolumeCall("write", 0, 512, Fua: true), calls);
        Assert.Contains(new VolumeCall("write", 65536, 512, Fua: false), calls);
        Assert.Contains(new VolumeCall("discard", 131072, 65536, Fua: true), calls);
        Assert.Contains(new VolumeCall("zero", 262144, 65536, Fua: true, NoHole: true), calls);
        Assert.Contains(new VolumeCall("zero", 393216, 65536, Fua: false, NoHole: false), calls);
        Assert.Contains(new VolumeCall("flush", 0, 0), calls);
    }

    [Fact]
    public async Task Requests_run_concurrently_and_replies_come_back_out_of_order()
    {
        var vol = NewVolume();
        vol.HeldReadOffset = 0;
        vol.ReadGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestServer.StartAsync(vol);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: true);
        await using var _c = c;

        await c.SendRequestAsync(0, Wire.CmdRead, 100, 0, 4096);          // held by the volume
        await c.SendRequestAsync(0, Wire.CmdRead, 200, 65536, 4096);
        await c.SendRequestAsync(0, Wire.CmdWrite, 300, 131072, 4, [1, 2, 3, 4]);
        var first = new[] { await c.ReadChunkAsync(), await c.ReadChunkAsync() };
        Assert.Equal([200ul, 300], first.Select(x => x.Cookie).Order().ToArray());

        vol.ReadGate.SetResult();
        var last = await c.ReadChunkAsync();
        Assert.Equal((100ul, Wire.ChunkOffsetData), (last.Cookie, last.Type));
    }

    [Fact]
    public async Task The_connection_stops_reading_while_its_requests_in_flight_hold_their_byte_limit()
    {
        var vol = NewVolume();
        vol.HeldReadOffset = 0;
        vol.ReadGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestServer.StartAsync([vol], maxRequestSize: 1 << 20, inFlightBytes: 1 << 20);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: true);
        await using var _c = c;
        vol.ClearCalls();

        // 768 KiB held by the volume, then a 512 KiB write that would pass the 1 MiB limit, then a
        // small read queued behind it: neither may start before the held read gives its bytes back.
        var data = Pattern(512 * 1024, 9);
        await c.SendRequestAsync(0, Wire.CmdRead, 100, 0, 768 * 1024);
        await c.SendRequestAsync(0, Wire.CmdWrite, 300, 2 << 20, (uint)data.Length, data);
        await c.SendRequestAsync(0, Wire.CmdRead, 200, 4 << 20, 4096);
        await Task.Delay(300);
        var calls = vol.Calls.Select(x => $"{x.Op} {x.Offset}").ToArray();
        vol.ReadGate.SetResult(); // before asserting: a held read would keep the server from stopping
        Assert.Equal(["read 0"], calls);

        var replies = new[] { await c.ReadChunkAsync(), await c.ReadChunkAsync(), await c.ReadChunkAsync() };
        Assert.Equal(100ul, replies[0].Cookie);
        Assert.Equal([200ul, 300], replies[1..].Select(x => x.Cookie).Order().ToArray());
        Assert.All(replies, r => Assert.NotEqual(Wire.ChunkError, r.Type));
        var back = new byte[data.Length];
        await vol.ReadAsync(2 << 20, back, default);
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Many_pipelined_requests_are_each_answered_by_cookie()
    {
        var vol = NewVolume();
        await using var server = await TestServer.StartAsync([vol], inFlight: 8);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: false);
        await using var _c = c;
        const int n = 200;

        // Writes first, all sent before any reply is read.
        var burst = new List<byte>();
        for (int i = 0; i < n; i++)
            burst.AddRange([.. Wire.Request(0, Wire.CmdWrite, (ulong)(1000 + i), (ulong)i * 4096, 4096), .. Pattern(4096, i)]);
        await c.SendAsync([.. burst]);
        var writes = new HashSet<ulong>();
        for (int i = 0; i < n; i++)
        {
            var r = await c.ReadSimpleReplyAsync();
            Assert.Equal(0u, r.Error);
            Assert.True(writes.Add(r.Cookie), $"cookie {r.Cookie} answered twice");
        }
        Assert.Equal(Enumerable.Range(1000, n).Select(i => (ulong)i).ToHashSet(), writes);

        // Then reads, each 4 KiB; simple replies carry no length, so every read is the same size.
        burst.Clear();
        for (int i = 0; i < n; i++)
            burst.AddRange(Wire.Request(0, Wire.CmdRead, (ulong)(5000 + i), (ulong)i * 4096, 4096));
        await c.SendAsync([.. burst]);
        for (int i = 0; i < n; i++)
        {
            var r = await c.ReadSimpleReplyAsync(4096);
            Assert.Equal(0u, r.Error);
            Assert.Equal(Pattern(4096, (int)r.Cookie - 5000), r.Data);
        }
    }

    [Fact]
    public async Task Requests_the_volume_completes_at_once_are_answered_in_request_order()
    {
        // A memory volume completes every call at once, so each request runs on the receive loop
        // and is answered before the next header is read: replies in request order, and a read
        // sees every write sent before it. Reads of 128 KiB take the two-part (gathered) reply.
        var vol = NewVolume();
        await using var server = await TestServer.StartAsync(vol);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: true);
        await using var _c = c;
        const int n = 300;
        var model = new byte[Size];
        var expected = new Dictionary<ulong, (ulong Offset, byte[] Data)>();
        var burst = new List<byte>();
        for (int i = 0; i < n; i++)
        {
            ulong cookie = (ulong)i, offset = (ulong)(i - i % 3) * 4096;
            if (i % 3 == 0)
            {
                var data = Pattern(4096, i);
                data.CopyTo(model, (long)offset);
                burst.AddRange([.. Wire.Request(0, Wire.CmdWrite, cookie, offset, 4096), .. data]);
            }
            else
            {
                int length = i % 3 == 1 ? 4096 : 128 << 10;
                expected[cookie] = (offset, model.AsSpan((int)offset, length).ToArray());
                burst.AddRange(Wire.Request(0, Wire.CmdRead, cookie, offset, (uint)length));
            }
        }
        await c.SendAsync([.. burst]);
        for (int i = 0; i < n; i++)
        {
            var chunk = await c.ReadChunkAsync();
            Assert.Equal((ulong)i, chunk.Cookie);
            if (!expected.TryGetValue(chunk.Cookie, out var read))
            {
                Assert.Equal(Wire.ChunkNone, chunk.Type);
                continue;
            }
            Assert.Equal((Wire.ChunkOffsetData, read.Offset), (chunk.Type, BinaryPrimitives.ReadUInt64BigEndian(chunk.Payload)));
            Assert.True(read.Data.AsSpan().SequenceEqual(chunk.Payload.AsSpan(8)), $"read {i} returned other bytes than the writes before it left");
        }
        Assert.Empty(server.Faults);
    }

    [Fact]
    public async Task Each_connection_runs_its_requests_on_a_thread_of_its_own()
    {
        // The connection's thread reads each request and, the memory volume completing at once,
        // runs it there too: no thread-pool worker between the socket and the volume.
        var vol = new ThreadRecordingVolume(new MemoryBlockVolume("vol", Size, 65536));
        await using var server = await TestServer.StartAsync(vol);
        var (first, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: true);
        await using var _f = first;
        var (second, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: true);
        await using var _s = second;
        var threads = new List<int>();
        foreach (var client in new[] { first, second })
        {
            for (int i = 0; i < 20; i++)
                await client.SendRequestAsync(0, i % 2 == 0 ? Wire.CmdWrite : Wire.CmdRead, (ulong)i, (ulong)i * 4096, 4096, i % 2 == 0 ? Pattern(4096, i) : null);
            for (int i = 0; i < 20; i++)
                Assert.Equal((ulong)i, (await client.ReadChunkAsync()).Cookie);
            var calls = vol.Threads;
            Assert.Equal(20 * (threads.Count + 1), calls.Count);
            var mine = calls.Skip(20 * threads.Count).ToList();
            Assert.All(mine, t => Assert.False(t.PoolThread, "a request ran on a thread-pool worker"));
            threads.Add(Assert.Single(mine.Select(t => t.ThreadId).Distinct()));
        }
        Assert.NotEqual(threads[0], threads[1]);
    }

    [Fact]
    public async Task Invalid_requests_get_errors_and_never_reach_the_volume()
    {
        var vol = NewVolume();
        var ro = NewVolume("ro", readOnly: true);
        await using var server = await TestServer.StartAsync(vol, ro);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: true);
        await using var _c = c;
        var (r, _) = await RawNbdClient.OpenAsync(server.Port, "ro", structured: false);
        await using var _r = r;
        vol.ClearCalls();
        ro.ClearCalls();

        var cases = new (RawNbdClient Client, ushort Flags, ushort Type, ulong Offset, uint Length, bool Payload, uint Error, string What)[]
        {
            (c, 0, Wire.CmdRead, (ulong)Size - 100, 101, false, Wire.EInval, "read past the end"),
            (c, 0, Wire.CmdRead, (ulong)Size + 1, 1, false, Wire.EInval, "read after the end"),
            (c, 0, Wire.CmdRead, ulong.MaxValue - 10, 100, false, Wire.EInval, "offset+length wraps"),
            (c, 0, Wire.CmdTrim, (ulong)Size, 65536, false, Wire.EInval, "trim past the end"),
            (c, 0, Wire.CmdBlockStatus, 0, 4096, false, Wire.EInval, "block status without a context"),
            (c, 0, Wire.CmdWrite, (ulong)Size - 10, 4096, true, Wire.ENoSpc, "write past the end"),
            (c, 0, Wire.CmdWriteZeroes, (ulong)Size, 1, false, Wire.ENoSpc, "zeroes past the end"),
            (c, 0, Wire.CmdRead, 0, 0, false, Wire.EInval, "zero-length read"),
            (c, 0, Wire.CmdWrite, 0, 0, false, Wire.EInval, "zero-length write"),
            (c, 0, Wire.CmdFlush, 4096, 0, false, Wire.EInval, "flush with an offset"),
            (c, 0, Wire.CmdFlush, 0, 1, false, Wire.EInval, "flush with a length"),
            (c, 0, Wire.CmdCache, 0, 4096, false, Wire.EInval, "NBD_CMD_CACHE (not offered)"),
            (c, 0, 8, 0, 4096, false, Wire.EInval, "NBD_CMD_RESIZE"),
            (c, 0, 0xffff, 0, 4096, false, Wire.EInval, "command 65535"),
            (c, Wire.FlagNoHole, Wire.CmdRead, 0, 4096, false, Wire.EInval, "NO_HOLE on a read"),
            (c, Wire.FlagReqOne, Wire.CmdWrite, 0, 4096, true, Wire.EInval, "REQ_ONE on a write"),
            (c, Wire.FlagFastZero, Wire.CmdWriteZeroes, 0, 4096, false, Wire.EInval, "FAST_ZERO (not offered)"),
            (c, 0x8000, Wire.CmdTrim, 0, 4096, false, Wire.EInval, "unknown flag"),
            (r, Wire.FlagDf, Wire.CmdRead, 0, 4096, false, Wire.EInval, "DF without structured replies"),
            (r, 0, Wire.CmdWrite, 0, 4096, true, Wire.EPerm, "write on a read-only export"),
            (r, Wire.FlagFua, Wire.CmdWrite, (ulong)Size, 4096, true, Wire.EPerm, "write on a read-only export, out of range too"),
            (r, 0, Wire.CmdTrim, 0, 65536, false, Wire.EPerm, "trim on a read-only export"),
            (r, 0, Wire.CmdWriteZeroes, 0, 65536, false, Wire.EPerm, "zeroes on a read-only export"),
        };
        ulong cookie = 1;
        foreach (var k in cases)
        {
            await k.Client.SendRequestAsync(k.Flags, k.Type, cookie, k.Offset, k.Length, k.Payload ? Pattern((int)k.Length, 3) : null);
            uint error;
            ulong answered;
            if (k.Client == c)
            {
                var chunk = await c.ReadChunkAsync();
                Assert.True(chunk.Type == Wire.ChunkError && chunk.Done, $"{k.What}: chunk type {chunk.Type:x}");
                (error, answered) = (chunk.Error, chunk.Cookie);
                Assert.False(string.IsNullOrEmpty(chunk.ErrorMessage), k.What);
            }
            else
            {
                var reply = await r.ReadSimpleReplyAsync();
                (error, answered) = (reply.Error, reply.Cookie);
            }
            Assert.True(error == k.Error, $"{k.What}: error {error}, expected {k.Error}");
            Assert.Equal(cookie++, answered);
        }
        Assert.Empty(vol.Calls);
        Assert.Empty(ro.Calls);

        // Both streams are still in step after refused writes with payloads.
        await c.SendRequestAsync(0, Wire.CmdRead, 999, 0, 16);
        var data = await c.ReadChunkAsync();
        Assert.Equal((Wire.ChunkOffsetData, 999ul), (data.Type, data.Cookie));
        await r.SendRequestAsync(0, Wire.CmdRead, 998, 0, 16);
        var simple = await r.ReadSimpleReplyAsync(16);
        Assert.Equal((0u, 998ul), (simple.Error, simple.Cookie));
    }

    [Theory]
    [InlineData(Wire.CmdRead)]
    [InlineData(Wire.CmdWrite)]
    public async Task Payload_over_the_maximum_closes_without_reading_it(ushort command)
    {
        var vol = NewVolume();
        await using var server = await TestServer.StartAsync([vol], maxRequestSize: 1 << 20);
        var (c, go) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: true);
        await using var _c = c;
        var sizes = go.Replies.Single(x => x.Type == Wire.RepInfo && BinaryPrimitives.ReadUInt16BigEndian(x.Data) == Wire.InfoBlockSize);
        Assert.Equal(1u << 20, BinaryPrimitives.ReadUInt32BigEndian(sizes.Data.AsSpan(10)));
        vol.ClearCalls();

        // Header only: the server must not wait for the announced payload.
        await c.SendRequestAsync(0, command, 1, 0, (1 << 20) + 1);
        Assert.True(await c.ClosedByServerAsync());
        Assert.Empty(vol.Calls);
    }

    [Fact]
    public async Task Bad_request_magic_closes()
    {
        var vol = NewVolume();
        await using var server = await TestServer.StartAsync(vol);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: false);
        await using var _c = c;
        await c.SendAsync(Wire.Request(0, Wire.CmdRead, 1, 0, 512, magic: 0x12560953)); // the historic magic
        Assert.True(await c.ClosedByServerAsync());
    }

    [Fact]
    public async Task Disconnect_finishes_requests_in_flight_and_ignores_what_follows()
    {
        var vol = NewVolume();
        vol.HeldReadOffset = 65536;
        vol.ReadGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestServer.StartAsync(vol);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: false);
        await using var _c = c;
        vol.ClearCalls();

        await c.SendAsync([
            .. Wire.Request(0, Wire.CmdRead, 1, 65536, 512),
            .. Wire.Request(0, Wire.CmdDisc, 2, 0, 0),
            .. Wire.Request(0, Wire.CmdWrite, 3, 0, 512), .. Pattern(512, 4),
            .. Wire.Request(0, Wire.CmdTrim, 4, 0, 65536),
        ]);
        await Task.Delay(100);
        vol.ReadGate.SetResult();
        var reply = await c.ReadSimpleReplyAsync(512);
        Assert.Equal((0u, 1ul), (reply.Error, reply.Cookie));
        Assert.True(await c.ClosedByServerAsync());
        Assert.Equal([new VolumeCall("read", 65536, 512)], vol.Calls);
    }

    [Fact]
    public async Task Block_status_reports_holes_as_hole_zero_and_data_as_zero_flags()
    {
        var vol = NewVolume();
        await vol.WriteAsync(65536, new byte[131072].Select(_ => (byte)1).ToArray(), false, CancellationToken.None);
        await using var server = await TestServer.StartAsync(vol);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: true, allocation: true);
        await using var _c = c;

        await c.SendRequestAsync(0, Wire.CmdBlockStatus, 1, 0, 1 << 20);
        var all = await c.ReadChunkAsync();
        Assert.Equal((Wire.ChunkBlockStatus, 1ul, true), (all.Type, all.Cookie, all.Done));
        Assert.Equal([(65536u, 3u), (131072u, 0u), ((1u << 20) - 196608, 3u)], all.Descriptors());

        await c.SendRequestAsync(Wire.FlagReqOne, Wire.CmdBlockStatus, 2, 0, 1 << 20);
        Assert.Equal([(65536u, 3u)], (await c.ReadChunkAsync()).Descriptors());

        await c.SendRequestAsync(Wire.FlagReqOne, Wire.CmdBlockStatus, 3, 70000, 1000);
        Assert.Equal([(1000u, 0u)], (await c.ReadChunkAsync()).Descriptors());

        await c.SendRequestAsync(0, Wire.CmdBlockStatus, 4, (ulong)Size - 100, 100);
        Assert.Equal([(100u, 3u)], (await c.ReadChunkAsync()).Descriptors());

        await c.SendRequestAsync(0, Wire.CmdBlockStatus, 5, (ulong)Size - 100, 101);
        var past = await c.ReadChunkAsync();
        Assert.Equal((Wire.ChunkError, Wire.EInval), (past.Type, past.Error));
    }

    [Fact]
    public async Task Several_connections_work_at_once()
    {
        var vol = NewVolume();
        await using var server = await TestServer.StartAsync(vol);
        await Task.WhenAll(Enumerable.Range(0, 8).Select(async i =>
        {
            var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: i % 2 == 0);
            await using var _c = c;
            for (int k = 0; k < 20; k++)
            {
                var data = Pattern(8192, i * 100 + k);
                ulong at = (ulong)(i * (1 << 20) + k * 8192);
                // In-flight requests may run in any order, so the read waits for the write's reply.
                await c.SendRequestAsync(0, Wire.CmdWrite, (ulong)k, at, 8192, data);
                if (i % 2 == 0)
                {
                    Assert.Equal(Wire.ChunkNone, (await c.ReadChunkAsync()).Type);
                    await c.SendRequestAsync(0, Wire.CmdRead, (ulong)k + 1000, at, 8192);
                    Assert.Equal(data, (await c.ReadChunkAsync()).Payload[8..]);
                }
                else
                {
                    Assert.Equal(0u, (await c.ReadSimpleReplyAsync()).Error);
                    await c.SendRequestAsync(0, Wire.CmdRead, (ulong)k + 1000, at, 8192);
                    Assert.Equal(data, (await c.ReadSimpleReplyAsync(8192)).Data);
                }
            }
        }));
        Assert.Empty(server.Faults);
    }

    [Fact]
    public async Task Stop_waits_for_requests_in_flight_then_closes()
    {
        var vol = NewVolume();
        vol.HeldReadOffset = 0;
        vol.ReadGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await TestServer.StartAsync(vol);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: false);
        await using var _c = c;
        await c.SendRequestAsync(0, Wire.CmdRead, 7, 0, 4096);
        while (vol.Calls.Count == 0)
            await Task.Delay(5);

        var stop = server.Server.StopAsync();
        await Task.Delay(100);
        Assert.False(stop.IsCompleted, "stop returned while a request was in flight");
        vol.ReadGate.SetResult();
        var reply = await c.ReadSimpleReplyAsync(4096);
        Assert.Equal((0u, 7ul), (reply.Error, reply.Cookie));
        await stop.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(await c.ClosedByServerAsync());
        await server.DisposeAsync();
    }

    [Fact]
    public async Task Stop_with_a_deadline_abandons_stuck_requests()
    {
        var vol = NewVolume();
        vol.HeldReadOffset = 0;
        vol.ReadGate = new TaskCompletionSource(); // never released
        var server = await TestServer.StartAsync(vol);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "vol", structured: false);
        await using var _c = c;
        await c.SendRequestAsync(0, Wire.CmdRead, 7, 0, 4096);
        while (vol.Calls.Count == 0)
            await Task.Delay(5);

        using var deadline = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await server.Server.StopAsync(deadline.Token).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(await c.ClosedByServerAsync());
        Assert.Equal(0, server.Server.ConnectionCount);
    }

    [Fact]
    public async Task Exports_added_and_removed_while_running()
    {
        var exports = new NbdVolumeExports(NewVolume("a"));
        await using var server = new NbdServer(exports, new NbdServerOptions { TcpEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        await server.StartAsync();
        exports.Add(NewVolume("b"), "added later");
        await using (var c = await RawNbdClient.HandshakeAsync(server.TcpEndPoint!.Port))
            Assert.Equal((ulong)Size, (await c.GoAsync("b")).Size);
        Assert.True(exports.Remove("b"));
        await using (var c = await RawNbdClient.HandshakeAsync(server.TcpEndPoint!.Port))
            Assert.Equal(Wire.ErrUnknown, (await c.OptionAsync(Wire.OptGo, Wire.InfoRequest("b"))).Single().Type);
        Assert.Throws<ArgumentException>(() => exports.Add(NewVolume("a")));
    }

    [Fact]
    public void Options_are_checked()
    {
        var exports = new NbdVolumeExports();
        Assert.Throws<ArgumentException>(() => new NbdServer(exports, new NbdServerOptions { TcpEndPoint = null }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NbdServer(exports, new NbdServerOptions { MaxRequestSize = 100 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NbdServer(exports, new NbdServerOptions { MaxRequestSize = 64 << 20 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NbdServer(exports, new NbdServerOptions { MaxInFlightPerConnection = 0 }));
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 10809), new NbdServerOptions().TcpEndPoint);
    }
}
