using System.Buffers.Binary;
using BackupAppliance.Core;
using BackupAppliance.Nbd.Tests.Support;

namespace BackupAppliance.Nbd.Tests;

/// <summary>
/// Reads a volume lends (spliced from its file through a pipe into the socket, never copied by the
/// server): the bytes on the wire, which reads take that path, and what happens when it cannot.
/// </summary>
public sealed class LentReadTests : IDisposable
{
    private const int Size = 4 << 20;
    private static readonly long[] Holes = [1, 2, 17, 40, 63];

    private readonly TempDir _dir = new();
    private readonly byte[] _content;
    private readonly byte[] _expected;
    private readonly FileLendingVolume _volume;

    public LentReadTests()
    {
        _content = new byte[Size];
        new Random(7).NextBytes(_content);
        _expected = FileLendingVolume.Expected(_content, Holes);
        _volume = new FileLendingVolume(_dir.File("volume"), _content, Holes);
    }

    public void Dispose()
    {
        _volume.Dispose();
        _dir.Dispose();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Lent_reads_carry_the_volumes_bytes_with_zero_pieces_in_place(bool structured)
    {
        await using var server = await TestServer.StartAsync(_volume);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "lending", structured);
        await using var _c = c;

        // 1 MiB reads over the whole volume and two of 256 KiB, every hole inside one: all in flight at once.
        var reads = new Dictionary<ulong, (long Offset, int Length)>();
        for (long offset = 0; offset < Size; offset += 1 << 20)
            reads[(ulong)reads.Count + 1] = (offset, 1 << 20);
        reads[100] = (64 * 1024, 256 * 1024);
        reads[101] = (3L << 20, 256 * 1024);
        foreach (var (cookie, r) in reads)
            await c.SendRequestAsync(0, Wire.CmdRead, cookie, (ulong)r.Offset, (uint)r.Length);

        for (int i = 0; i < reads.Count; i++)
        {
            var (cookie, error, data) = await ReadReplyAsync(c, structured, reads);
            var r = reads[cookie];
            Assert.Equal(0u, error);
            Assert.True(_expected.AsSpan((int)r.Offset, r.Length).SequenceEqual(data), $"read {cookie} at {r.Offset} differs");
        }
        Assert.Equal(reads.Count, _volume.Lends);
        Assert.Equal(0, _volume.Reads);
        Assert.Empty(server.Faults);
    }

    [Fact]
    public async Task Reads_that_are_small_unaligned_or_larger_than_the_pipe_are_copied_with_the_same_bytes()
    {
        await using var server = await TestServer.StartAsync(_volume);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "lending", structured: true);
        await using var _c = c;

        var reads = new Dictionary<ulong, (long Offset, int Length)>
        {
            [1] = (65536, 65536),           // not above the copy limit
            [2] = (512, 256 * 1024),        // not page-aligned
            [3] = (0, 2 << 20),             // larger than a pipe
        };
        foreach (var (cookie, r) in reads)
        {
            await c.SendRequestAsync(0, Wire.CmdRead, cookie, (ulong)r.Offset, (uint)r.Length);
            var (got, error, data) = await ReadReplyAsync(c, structured: true, reads);
            Assert.Equal((cookie, 0u), (got, error));
            Assert.True(_expected.AsSpan((int)r.Offset, r.Length).SequenceEqual(data), $"read {cookie} differs");
        }
        Assert.Equal(0, _volume.Lends);
        Assert.Equal(3, _volume.Reads);
    }

    [Fact]
    public async Task With_lending_off_every_read_is_copied()
    {
        await using var server = await TestServer.StartAsync([_volume], lendReads: false);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "lending", structured: false);
        await using var _c = c;

        await c.SendRequestAsync(0, Wire.CmdRead, 1, 0, 1 << 20);
        var reply = await c.ReadSimpleReplyAsync(1 << 20);
        Assert.Equal(0u, reply.Error);
        Assert.True(_expected.AsSpan(0, 1 << 20).SequenceEqual(reply.Data));
        Assert.Equal((0, 1), (_volume.Lends, _volume.Reads));
    }

    [Fact]
    public async Task A_lend_that_fails_midway_is_an_error_reply_and_the_next_read_is_whole()
    {
        await using var server = await TestServer.StartAsync(_volume);
        var (c, _) = await RawNbdClient.OpenAsync(server.Port, "lending", structured: true);
        await using var _c = c;

        // The pipe already holds the first piece when the volume fails: none of it may reach the wire.
        _volume.FailAfterFirstPiece = new VolumeException(VolumeError.IoError, "disk read failed at block 16");
        await c.SendRequestAsync(0, Wire.CmdRead, 1, 1 << 20, 1 << 20);
        var failed = await c.ReadChunkAsync();
        Assert.Equal((Wire.ChunkError, 1ul, true, Wire.EIo), (failed.Type, failed.Cookie, failed.Done, failed.Error));
        Assert.Contains("disk read failed at block 16", failed.ErrorMessage);

        _volume.FailAfterFirstPiece = null;
        var reads = new Dictionary<ulong, (long Offset, int Length)> { [2] = (2L << 20, 1 << 20) };
        await c.SendRequestAsync(0, Wire.CmdRead, 2, 2L << 20, 1 << 20);
        var (cookie, error, data) = await ReadReplyAsync(c, structured: true, reads);
        Assert.Equal((2ul, 0u), (cookie, error));
        Assert.True(_expected.AsSpan(2 << 20, 1 << 20).SequenceEqual(data), "the read after the failed one differs");
        Assert.Equal(1, _volume.Lends);
    }

    /// <summary>One reply to any of <paramref name="reads"/>: its cookie, error and data (simple replies carry no length: it comes from the cookie).</summary>
    private static async Task<(ulong Cookie, uint Error, byte[] Data)> ReadReplyAsync(RawNbdClient c, bool structured, Dictionary<ulong, (long Offset, int Length)> reads)
    {
        if (structured)
        {
            var chunk = await c.ReadChunkAsync();
            Assert.True(chunk.Done, "a read is answered with one final chunk");
            if (chunk.Type != Wire.ChunkOffsetData)
                return (chunk.Cookie, chunk.Error, []);
            Assert.Equal((ulong)reads[chunk.Cookie].Offset, BinaryPrimitives.ReadUInt64BigEndian(chunk.Payload));
            return (chunk.Cookie, 0, chunk.Payload[8..]);
        }
        var header = await c.ReadExactAsync(16);
        Assert.Equal(Wire.SimpleMagic, BinaryPrimitives.ReadUInt32BigEndian(header));
        uint error = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
        ulong cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
        return (cookie, error, error == 0 ? await c.ReadExactAsync(reads[cookie].Length) : []);
    }
}
