using System.Threading.Channels;
using BackupAppliance.Core;
using BackupAppliance.Replication.Compression;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Replication.Wire;
using static BackupAppliance.Replication.Tests.Support.ReplicationRig;

namespace BackupAppliance.Replication.Tests;

/// <summary>
/// A hand-driven agent sends the receiver bad frames in the middle of a stream: each gets the
/// error reply its fault calls for, and the staging's bytes, hashes and durable state stay as they were.
/// </summary>
public class ReceiverRefusalTests
{
    private const int Block = 64 * 1024;
    private const int Size = 1024 * 1024;

    [Fact]
    public async Task EveryBadFrameIsRefusedWithItsCodeAndChangesNothing()
    {
        await using var rig = await StartAsync();
        await using var agent = await RawAgent.ConnectAsync(rig);
        var begin = Assert.IsType<BackupBegin>((await agent.SendAsync("ctl", 0, new BackupOffer(Agent, Volume, null, "snap-1", Size, Block)))!.Message);
        ulong s = begin.Stream;
        Assert.Equal((ulong)ReceiverOptions.Default.CreditWindow, begin.CreditUpTo);
        var image = MakeImage(Size, seed: 21);
        Assert.Null((await agent.SendAsync("data", 1, DataFrameOf(s, 0, image.AsMemory(0, Block)), expectReply: false)));
        var before = rig.Store.StagingSnapshot(Agent, Volume)!.Value;
        Assert.Equal(image.AsSpan(0, Block).ToArray(), before.Image.AsSpan(0, Block).ToArray());

        var good2 = agent.Encode(2, DataFrameOf(s, Block, image.AsMemory(Block, Block)));
        var flipped = good2.ToArray();
        flipped[flipped.Length / 2] ^= 1;
        var oversized = new byte[WireProtocol.MaxFrameBytes + 1];
        good2.CopyTo(oversized, 0);
        var cases = new (string Name, Func<Task<WireFrame?>> Send, WireErrorCode Code, ulong? About)[]
        {
            ("bit flip", () => agent.SendRawAsync("data", flipped), WireErrorCode.ChecksumMismatch, null),
            ("cut short", () => agent.SendRawAsync("data", good2.AsSpan(0, good2.Length - 7).ToArray()), WireErrorCode.Truncated, 2),
            ("over 1 MiB", () => agent.SendRawAsync("data", oversized), WireErrorCode.Oversized, 2),
            ("unknown volume", () => agent.SendRawAsync("data", good2, volume: "vol_b"), WireErrorCode.UnknownVolume, 2),
            ("unknown stream", () => agent.SendAsync("data", 2, DataFrameOf(s + 1, Block, image.AsMemory(Block, Block))), WireErrorCode.UnknownStream, 2),
            ("skips a frame", () => agent.SendAsync("data", 3, DataFrameOf(s, Block, image.AsMemory(Block, Block))), WireErrorCode.OutOfSequence, 3),
            ("beyond credit", () => agent.SendAsync("data", 40, DataFrameOf(s, Block, image.AsMemory(Block, Block))), WireErrorCode.CreditExceeded, 40),
            ("behind position", () => agent.SendAsync("data", 2, DataFrameOf(s, 0, image.AsMemory(0, Block))), WireErrorCode.OutOfSequence, 2),
            ("misaligned", () => agent.SendAsync("data", 2, new DataFrame(s, [WireExtent.Zero(Block + 4096, Block)])), WireErrorCode.Malformed, 2),
            ("past the end", () => agent.SendAsync("data", 2, new DataFrame(s, [WireExtent.Zero(Size - Block, 2 * Block)])), WireErrorCode.Malformed, 2),
            ("hash count", () => agent.SendAsync("data", 2, DataFrameOf(s, Block, image.AsMemory(Block, Block), hashes: new byte[2 * WireProtocol.BlockHashSize])), WireErrorCode.Malformed, 2),
            ("bad hash", () => agent.SendAsync("data", 2, DataFrameOf(s, Block, image.AsMemory(Block, Block), hashes: new byte[WireProtocol.BlockHashSize])), WireErrorCode.BlockHashMismatch, 2),
            ("not zstd", () => agent.SendAsync("data", 2, DataFrameOf(s, Block, image.AsMemory(Block, Block), payload: new byte[100])), WireErrorCode.PayloadCorrupt, 2),
            ("zstd too short", () => agent.SendAsync("data", 2, DataFrameOf(s, Block, image.AsMemory(Block, Block), payload: Compress(image.AsSpan(Block, 4096)))), WireErrorCode.PayloadCorrupt, 2),
            ("zstd too long", () => agent.SendAsync("data", 2, DataFrameOf(s, Block, image.AsMemory(Block, Block), payload: Compress(image.AsSpan(0, 2 * Block)))), WireErrorCode.PayloadCorrupt, 2),
            ("unknown type", () => agent.SendRawAsync("data", HandMade(WireProtocol.Version, "rewind")), WireErrorCode.UnknownMessageType, 2),
            ("newer version", () => agent.SendRawAsync("data", HandMade(WireProtocol.Version + 1, "data")), WireErrorCode.UnsupportedVersion, 2),
            ("older version", () => agent.SendRawAsync("data", HandMade(WireProtocol.OldestVersion - 1, "data")), WireErrorCode.UnsupportedVersion, 2),
            ("wrong subject", () => agent.SendAsync("ctl", 2, new Credit(s, 5)), WireErrorCode.Malformed, 2),
            ("offer for another volume", () => agent.SendAsync("ctl", 0, new BackupOffer(Agent, "vol_b", null, "x", Size, Block)), WireErrorCode.UnknownVolume, 0),
            ("base it lacks", () => agent.SendAsync("ctl", 0, new BackupOffer(Agent, Volume, "p9", "snap-2", Size, Block)), WireErrorCode.BaseMismatch, 0),
            ("another target while busy", () => agent.SendAsync("ctl", 0, new BackupOffer(Agent, Volume, null, "snap-2", Size, Block)), WireErrorCode.Busy, 0),
        };
        foreach (var c in cases)
        {
            var reply = await c.Send();
            var error = Assert.IsType<ErrorReply>(reply?.Message);
            Assert.True(c.Code == error.Code, $"{c.Name}: {error.Code} ({error.Message}), expected {c.Code}");
            Assert.True(c.About == error.About, $"{c.Name}: about {error.About}, expected {c.About}");
            Assert.False(string.IsNullOrWhiteSpace(error.Message));
            if (c.Code == WireErrorCode.OutOfSequence && c.About == 3)
                Assert.Equal(new Resume(s, 1, Block, 1 + (ulong)ReceiverOptions.Default.CreditWindow), (await agent.NextAsync())!.Message);
            var after = rig.Store.StagingSnapshot(Agent, Volume)!.Value;
            Assert.True(before.Image.AsSpan().SequenceEqual(after.Image), $"{c.Name} changed the staged bytes");
            Assert.True(before.Hashes.AsSpan().SequenceEqual(after.Hashes), $"{c.Name} changed the staged hashes");
            // Only what was applied before may have become durable (an out-of-sequence frame makes it so).
            Assert.Equal(before.State.Request, after.State.Request);
            Assert.True(after.State.DurableSequence <= 1, $"{c.Name}: durable {after.State.DurableSequence}");
        }

        // The stream is still good: frame 2 is applied, and a repeat of it is a duplicate.
        Assert.Null(await agent.SendRawAsync("data", good2, expectReply: false));
        Assert.Equal(new Ack(s, 1, Block), (await agent.SendRawAsync("data", good2))!.Message);
        var applied = rig.Store.StagingSnapshot(Agent, Volume)!.Value;
        Assert.Equal(image.AsSpan(0, 2 * Block).ToArray(), applied.Image.AsSpan(0, 2 * Block).ToArray());
        Assert.Equal(1, rig.Receiver.Statistics.ErrorsOf(WireErrorCode.BlockHashMismatch));
    }

    [Fact]
    public async Task AnIdleStreamIsReplacedAndACommitIsAnsweredAgain()
    {
        await using var rig = await StartAsync(new ReceiverOptions { IdleTimeout = TimeSpan.Zero });
        await using var agent = await RawAgent.ConnectAsync(rig);
        var first = Assert.IsType<BackupBegin>((await agent.SendAsync("ctl", 0, new BackupOffer(Agent, Volume, null, "snap-1", Size, Block)))!.Message);
        var resumed = Assert.IsType<Resume>((await agent.SendAsync("ctl", 0, new BackupOffer(Agent, Volume, null, "snap-1", Size, Block)))!.Message);
        Assert.Equal(new Resume(first.Stream, 0, 0, (ulong)ReceiverOptions.Default.CreditWindow), resumed);
        var second = Assert.IsType<BackupBegin>((await agent.SendAsync("ctl", 0, new BackupOffer(Agent, Volume, null, "snap-2", Size, Block)))!.Message);
        Assert.NotEqual(first.Stream, second.Stream);

        // An all-zero image in one zero extent, then commit twice: the same commit_ack.
        Assert.Null(await agent.SendAsync("data", 1, new DataFrame(second.Stream, [WireExtent.Zero(0, Size)]), expectReply: false));
        using var zeros = BlockHashTable.Create(rig.Scratch.File("zeros.bin"), Size, Block);
        var commit = new Commit(second.Stream, 1, zeros.ComputeDigest());
        var ack1 = Assert.IsType<CommitAck>((await agent.SendAsync("ctl", 2, commit))!.Message);
        var ack2 = Assert.IsType<CommitAck>((await agent.SendAsync("ctl", 2, commit))!.Message);
        Assert.Equal(ack1.Point, ack2.Point);
        Assert.Equal(zeros.ComputeDigest(), ack2.ImageDigest);
        Assert.Equal(new byte[Size], rig.Store.LatestImage(Agent, Volume));
    }

    private static byte[] Compress(ReadOnlySpan<byte> data)
    {
        using var zstd = new ZstdCompressor(3);
        var buffer = new byte[ZstdCompressor.MaxCompressedLength(data.Length)];
        return buffer.AsSpan(0, zstd.Compress(data, buffer)).ToArray();
    }

    private static DataFrame DataFrameOf(ulong stream, long offset, ReadOnlyMemory<byte> data, byte[]? hashes = null, byte[]? payload = null)
    {
        if (hashes is null)
        {
            hashes = new byte[BlockHashes.Count(data.Length, Block) * WireProtocol.BlockHashSize];
            BlockHashes.Compute(data.Span, Block, hashes);
        }
        return new DataFrame(stream, [WireExtent.Data(offset, data.Length, payload ?? Compress(data.Span), hashes)]);
    }

    /// <summary>A frame with envelope only, of any version and type, with a correct crc.</summary>
    private static byte[] HandMade(ulong version, string type)
    {
        using var buffer = new PooledBufferWriter();
        var w = new MessagePackWriter(buffer);
        w.WriteMapHeader(4);
        w.WriteString("v");
        w.WriteUInt64(version);
        w.WriteString("t");
        w.WriteString(type);
        w.WriteString("seq");
        w.WriteUInt64(2);
        w.WriteString("crc");
        w.WriteUInt32Full(Crc32C.Compute(buffer.WrittenSpan));
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>An agent driven by hand: sends frames, reads the replies of every volume of its agent.</summary>
    private sealed class RawAgent : IAsyncDisposable
    {
        private readonly Channel<TransportMessage> _replies = Channel.CreateUnbounded<TransportMessage>();
        private readonly FrameEncoder _encoder = new();
        private readonly ITransport _transport;
        private IAsyncDisposable? _subscription;

        private RawAgent(ITransport transport) => _transport = transport;

        public static async Task<RawAgent> ConnectAsync(ReplicationRig rig)
        {
            var agent = new RawAgent(rig.AgentTransport);
            agent._subscription = await rig.AgentTransport.SubscribeAsync($"bapp.{Agent}.*.reply", agent._replies.Writer);
            return agent;
        }

        public byte[] Encode(ulong sequence, ReplicationMessage message) => _encoder.Encode(sequence, message).ToArray();

        public Task<WireFrame?> SendAsync(string kind, ulong sequence, ReplicationMessage message, bool expectReply = true) =>
            SendRawAsync(kind, Encode(sequence, message), expectReply: expectReply);

        /// <summary>Sends and returns the next reply; without <paramref name="expectReply"/>, checks with a flush frame that none came.</summary>
        public async Task<WireFrame?> SendRawAsync(string kind, byte[] bytes, string volume = Volume, bool expectReply = true)
        {
            await _transport.PublishAsync($"bapp.{Agent}.{volume}.{kind}", bytes);
            if (expectReply)
                return await NextAsync();
            // Data frames are handled in order: a frame the receiver must refuse (seq 0) marks that it is done with ours.
            await _transport.PublishAsync($"bapp.{Agent}.{volume}.data", HandMade(WireProtocol.Version, "data"));
            var next = await NextAsync();
            Assert.Equal(WireErrorCode.Malformed, Assert.IsType<ErrorReply>(next!.Message).Code);
            return null;
        }

        public async Task<WireFrame?> NextAsync()
        {
            using var hang = new CancellationTokenSource(TimeSpan.FromSeconds(30)); // a missing reply fails instead of hanging
            var m = await _replies.Reader.ReadAsync(hang.Token);
            return FrameDecoder.Decode(m.Payload);
        }

        public async ValueTask DisposeAsync()
        {
            if (_subscription is not null)
                await _subscription.DisposeAsync();
            _encoder.Dispose();
        }
    }
}
