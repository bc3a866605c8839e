using System.Buffers.Binary;
using System.Text;
using BackupAppliance.Nbd.Tests.Support;

namespace BackupAppliance.Nbd.Tests;

/// <summary>The handshake phase byte by byte: greeting, client flags, every option and its replies.</summary>
public sealed class HandshakeTests(NbdServerFixture f) : IClassFixture<NbdServerFixture>
{
    private static ushort U16(byte[] b, int at) => BinaryPrimitives.ReadUInt16BigEndian(b.AsSpan(at));
    private static uint U32(byte[] b, int at) => BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(at));

    [Fact]
    public async Task Greeting_offers_fixed_newstyle_and_no_zeroes()
    {
        await using var c = await RawNbdClient.ConnectAsync(f.Port);
        Assert.Equal(0b11, await c.ReadGreetingAsync());
    }

    [Theory]
    [InlineData(0u)]                 // plain newstyle: refused
    [InlineData(Wire.CNoZeroes)]     // no FIXED_NEWSTYLE either
    [InlineData(Wire.CFixed | 4u)]   // unknown client flag
    [InlineData(0xffffffffu)]
    public async Task Client_flags_without_fixed_newstyle_or_with_unknown_bits_close(uint flags)
    {
        await using var c = await RawNbdClient.ConnectAsync(f.Port);
        await c.ReadGreetingAsync();
        await c.SendU32Async(flags);
        Assert.True(await c.ClosedByServerAsync());
    }

    [Fact]
    public async Task List_sends_one_server_reply_per_export_then_ack()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        var replies = await c.OptionAsync(Wire.OptList, []);
        Assert.Equal(Wire.RepAck, replies[^1].Type);
        var servers = replies.SkipLast(1).ToList();
        Assert.All(servers, r => Assert.Equal(Wire.RepServer, r.Type));
        var listed = servers.Select(r =>
        {
            int n = (int)U32(r.Data, 0);
            return (Name: Encoding.UTF8.GetString(r.Data, 4, n), Text: Encoding.UTF8.GetString(r.Data, 4 + n, r.Data.Length - 4 - n));
        }).ToList();
        Assert.Equal([("disk", "test disk"), ("small", "small disk"), ("ro", "read-only disk"), ("scratch", "scratch disk")], listed);
    }

    [Fact]
    public async Task List_with_data_is_invalid_and_haggling_continues()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        var bad = await c.OptionAsync(Wire.OptList, [1, 2, 3]);
        Assert.Equal(Wire.ErrInvalid, bad.Single().Type);
        Assert.Equal(Wire.RepAck, (await c.OptionAsync(Wire.OptList, []))[^1].Type);
    }

    [Theory]
    [InlineData(Wire.OptStartTls)]
    [InlineData(4u)]           // the withdrawn PEEK_EXPORT
    [InlineData(11u)]          // EXTENDED_HEADERS, not implemented
    [InlineData(0x7fffffffu)]
    public async Task Unknown_options_are_unsupported_and_their_data_skipped(uint option)
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        var r = await c.OptionAsync(option, new byte[100]);
        Assert.Equal(Wire.ErrUnsup, r.Single().Type);
        Assert.Equal(option, r.Single().Option);
        Assert.Equal(Wire.RepAck, (await c.OptionAsync(Wire.OptStructured, [])).Single().Type);
    }

    [Fact]
    public async Task Info_describes_an_export_and_stays_in_haggling()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        var replies = await c.OptionAsync(Wire.OptInfo, Wire.InfoRequest("disk", Wire.InfoName, Wire.InfoDescription, Wire.InfoBlockSize));
        Assert.Equal(Wire.RepAck, replies[^1].Type);
        var infos = replies.SkipLast(1).ToDictionary(r => U16(r.Data, 0), r => r.Data);
        Assert.All(replies.SkipLast(1), r => Assert.Equal(Wire.RepInfo, r.Type));

        var export = infos[Wire.InfoExport];
        Assert.Equal(12, export.Length);
        Assert.Equal((ulong)NbdServerFixture.DiskSize, BinaryPrimitives.ReadUInt64BigEndian(export.AsSpan(2)));
        Assert.Equal(Wire.FHasFlags | Wire.FFlush | Wire.FFua | Wire.FTrim | Wire.FWriteZeroes | Wire.FMultiConn, U16(export, 10));
        Assert.Equal("disk", Encoding.UTF8.GetString(infos[Wire.InfoName], 2, infos[Wire.InfoName].Length - 2));
        Assert.Equal("test disk", Encoding.UTF8.GetString(infos[Wire.InfoDescription], 2, infos[Wire.InfoDescription].Length - 2));
        var sizes = infos[Wire.InfoBlockSize];
        Assert.Equal(14, sizes.Length);
        Assert.Equal((1u, 65536u, 32u << 20), (U32(sizes, 2), U32(sizes, 6), U32(sizes, 10)));

        // Still haggling: another option is answered.
        Assert.Equal(Wire.RepAck, (await c.OptionAsync(Wire.OptList, []))[^1].Type);
    }

    [Fact]
    public async Task Info_without_requests_still_sends_the_export_info()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        var replies = await c.OptionAsync(Wire.OptInfo, Wire.InfoRequest("small"));
        Assert.Equal(Wire.RepAck, replies[^1].Type);
        Assert.Contains(replies, r => r.Type == Wire.RepInfo && U16(r.Data, 0) == Wire.InfoExport);
        Assert.DoesNotContain(replies, r => r.Type == Wire.RepInfo && U16(r.Data, 0) == Wire.InfoName);
    }

    [Theory]
    [InlineData(Wire.OptInfo)]
    [InlineData(Wire.OptGo)]
    public async Task Unknown_export_is_err_unknown_and_haggling_continues(uint option)
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        var r = await c.OptionAsync(option, Wire.InfoRequest("no-such-export"));
        Assert.Equal(Wire.ErrUnknown, r.Single().Type);
        Assert.Contains("no-such-export", r.Single().Text);
        var go = await c.GoAsync("small");
        Assert.Equal((ulong)NbdServerFixture.SmallSize, go.Size);
    }

    [Fact]
    public async Task Go_with_the_empty_name_opens_the_first_export()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        var go = await c.GoAsync("");
        Assert.Equal((ulong)NbdServerFixture.DiskSize, go.Size);
        var name = go.Replies.Single(r => r.Type == Wire.RepInfo && U16(r.Data, 0) == Wire.InfoName);
        Assert.Equal("disk", Encoding.UTF8.GetString(name.Data, 2, name.Data.Length - 2));
        // In transmission now: a read is answered.
        await c.SendRequestAsync(0, Wire.CmdRead, 7, 0, 512);
        var reply = await c.ReadSimpleReplyAsync(512);
        Assert.Equal((0u, 7ul), (reply.Error, reply.Cookie));
    }

    [Fact]
    public async Task Read_only_export_flags_have_read_only_and_no_trim_or_zeroes()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        var go = await c.GoAsync("ro");
        Assert.Equal(Wire.FHasFlags | Wire.FReadOnly | Wire.FFlush | Wire.FFua | Wire.FMultiConn, go.Flags);
    }

    [Fact]
    public async Task Structured_replies_add_send_df()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        Assert.Equal(Wire.RepAck, (await c.OptionAsync(Wire.OptStructured, [])).Single().Type);
        var go = await c.GoAsync("disk");
        Assert.NotEqual(0, go.Flags & Wire.FDf);
    }

    [Fact]
    public async Task Structured_reply_with_data_is_invalid()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        Assert.Equal(Wire.ErrInvalid, (await c.OptionAsync(Wire.OptStructured, [0])).Single().Type);
        var go = await c.GoAsync("disk");
        Assert.Equal(0, go.Flags & Wire.FDf); // not negotiated
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Export_name_replies_with_size_flags_and_zeroes_unless_no_zeroes(bool noZeroes)
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port, noZeroes ? Wire.CFixed | Wire.CNoZeroes : Wire.CFixed);
        await c.SendAsync(Wire.Option(Wire.OptExportName, Encoding.UTF8.GetBytes("small")));
        var reply = await c.ReadExactAsync(noZeroes ? 10 : 134);
        Assert.Equal((ulong)NbdServerFixture.SmallSize, BinaryPrimitives.ReadUInt64BigEndian(reply));
        Assert.Equal(Wire.FHasFlags | Wire.FFlush | Wire.FFua | Wire.FTrim | Wire.FWriteZeroes | Wire.FMultiConn, U16(reply, 8));
        Assert.All(reply.Skip(10), b => Assert.Equal(0, b));
        await c.SendRequestAsync(0, Wire.CmdRead, 1, 0, 16);
        Assert.Equal(0u, (await c.ReadSimpleReplyAsync(16)).Error);
    }

    [Fact]
    public async Task Export_name_of_an_unknown_export_closes()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        await c.SendAsync(Wire.Option(Wire.OptExportName, Encoding.UTF8.GetBytes("missing")));
        Assert.True(await c.ClosedByServerAsync());
    }

    [Fact]
    public async Task Abort_is_acknowledged_then_the_server_closes()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        var r = await c.OptionAsync(Wire.OptAbort, []);
        Assert.Equal((Wire.OptAbort, Wire.RepAck), (r.Single().Option, r.Single().Type));
        Assert.True(await c.ClosedByServerAsync());
    }

    [Fact]
    public async Task List_meta_context_offers_base_allocation()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        await c.OptionAsync(Wire.OptStructured, []);
        foreach (var queries in new[] { Array.Empty<string>(), ["base:"], ["base:allocation"], ["x-other:thing", "base:"] })
        {
            var r = await c.OptionAsync(Wire.OptListMeta, Wire.MetaRequest("disk", queries));
            Assert.Equal(Wire.RepAck, r[^1].Type);
            var meta = Assert.Single(r.SkipLast(1));
            Assert.Equal(Wire.RepMeta, meta.Type);
            Assert.Equal("base:allocation", Encoding.UTF8.GetString(meta.Data, 4, meta.Data.Length - 4));
        }
        // A query in a namespace we do not serve matches nothing.
        Assert.Equal(Wire.RepAck, (await c.OptionAsync(Wire.OptListMeta, Wire.MetaRequest("disk", "qemu:dirty-bitmap:x"))).Single().Type);
    }

    [Fact]
    public async Task Set_meta_context_selects_base_allocation_only()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        await c.OptionAsync(Wire.OptStructured, []);
        var r = await c.OptionAsync(Wire.OptSetMeta, Wire.MetaRequest("disk", "base:", "x-foo:bar", "base:allocation"));
        Assert.Equal(Wire.RepAck, r[^1].Type);
        var meta = Assert.Single(r.SkipLast(1));
        Assert.Equal(Wire.RepMeta, meta.Type);
        uint id = U32(meta.Data, 0);
        Assert.Equal("base:allocation", Encoding.UTF8.GetString(meta.Data, 4, meta.Data.Length - 4));

        await c.GoAsync("disk");
        await c.SendRequestAsync(0, Wire.CmdBlockStatus, 5, 0, 1 << 20);
        var chunk = await c.ReadChunkAsync();
        Assert.Equal((Wire.ChunkBlockStatus, 5ul, true), (chunk.Type, chunk.Cookie, chunk.Done));
        Assert.Equal(id, U32(chunk.Payload, 0));
    }

    [Fact]
    public async Task Set_meta_context_needs_structured_replies()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        Assert.Equal(Wire.ErrInvalid, (await c.OptionAsync(Wire.OptSetMeta, Wire.MetaRequest("disk", "base:allocation"))).Single().Type);
    }

    [Fact]
    public async Task Meta_context_for_another_export_does_not_apply()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        await c.OptionAsync(Wire.OptStructured, []);
        await c.OptionAsync(Wire.OptSetMeta, Wire.MetaRequest("small", "base:allocation"));
        await c.GoAsync("disk");
        await c.SendRequestAsync(0, Wire.CmdBlockStatus, 9, 0, 4096);
        var chunk = await c.ReadChunkAsync();
        Assert.Equal((Wire.ChunkError, Wire.EInval), (chunk.Type, chunk.Error));
    }

    [Fact]
    public async Task Malformed_option_data_is_invalid_and_the_next_option_parses()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        await c.OptionAsync(Wire.OptStructured, []);
        var go = Wire.InfoRequest("disk", Wire.InfoName);
        var cases = new List<(uint Option, byte[] Data)>
        {
            (Wire.OptGo, [0, 0, 0, 200, 1, 2, 3, 4]),                   // name longer than the data
            (Wire.OptGo, go[..^1]),                                      // truncated request list
            (Wire.OptGo, [.. go, 0]),                                    // trailing byte
            (Wire.OptInfo, [0, 0, 0, 0]),                                // shorter than the minimum
            (Wire.OptInfo, [0, 0, 0, 2, 0xc3, 0x28, 0, 0]),              // name is not UTF-8
            (Wire.OptInfo, [0, 0, 0, 2, (byte)'a', 0, 0, 0]),            // name holds a NUL
            (Wire.OptSetMeta, Wire.MetaRequest("disk", "base:allocation")[..^3]),
            (Wire.OptListMeta, [0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 1]),    // 5 queries declared, none there
            (Wire.OptListMeta, [0, 0, 0]),
        };
        foreach (var (option, data) in cases)
        {
            var r = await c.OptionAsync(option, data);
            Assert.True(r.Single().Type == Wire.ErrInvalid, $"option {option} data {Convert.ToHexString(data)} gave {r.Single().Type:x}");
        }
        Assert.Equal((ulong)NbdServerFixture.DiskSize, (await c.GoAsync("disk")).Size);
    }

    [Fact]
    public async Task Oversized_option_is_refused_and_the_connection_closed()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        await c.SendAsync(Wire.Option(Wire.OptGo, [], declaredLength: 0xfffffff0));
        var r = await c.ReadOptionReplyAsync();
        Assert.Equal((Wire.OptGo, Wire.ErrTooBig), (r.Option, r.Type));
        Assert.True(await c.ClosedByServerAsync());
    }

    [Fact]
    public async Task Bad_option_magic_closes()
    {
        await using var c = await RawNbdClient.HandshakeAsync(f.Port);
        await c.SendAsync(Wire.Option(Wire.OptList, [], magic: 0x1122334455667788));
        Assert.True(await c.ClosedByServerAsync());
    }
}
