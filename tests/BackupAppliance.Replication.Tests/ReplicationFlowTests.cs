using BackupAppliance.Replication.Compression;
using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Sending;
using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;
using static BackupAppliance.Replication.Tests.Support.ReplicationRig;

namespace BackupAppliance.Replication.Tests;

public class ReplicationFlowTests
{
    private const int Block = 64 * 1024;

    [Fact]
    public async Task FullThenIncrementalsReproduceTheImage()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(12 * 1024 * 1024 + 4096, seed: 1); // a short last block
        var full = await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"));
        Assert.Equal(Sha256(image), Sha256(rig.Store.LatestImage(Agent, Volume)));
        Assert.Equal(full.Digest, rig.Store.LatestHashes(Agent, Volume).ComputeDigest());
        Assert.False(full.Resumed);

        // Increment 1: new bytes in two places, written zeros, a discard.
        var random = new Random(2);
        random.NextBytes(image.AsSpan(3 * Block, 5 * Block));
        image.AsSpan(20 * Block, 2 * Block).Fill(0x5a);
        image.AsSpan(40 * Block, 3 * Block).Clear();
        image.AsSpan(60 * Block, 4 * Block).Clear();
        var inc1 = await rig.BackupAsync(rig.Source(image, Block, [
            new(3 * Block, 5 * Block, SourceRangeKind.Data),
            new(20 * Block, 2 * Block, SourceRangeKind.Data),
            new(40 * Block, 3 * Block, SourceRangeKind.Zero),
            new(60 * Block, 4 * Block, SourceRangeKind.Discard),
        ], "snap-2"));
        Assert.Equal(Sha256(image), Sha256(rig.Store.LatestImage(Agent, Volume)));
        Assert.Equal(14L * Block, inc1.ChangedBytes);
        Assert.Equal(7L * Block, inc1.DataBytes);

        // Increment 2: the short last block and a data range that turned all-zero.
        random.NextBytes(image.AsSpan(image.Length - 4096));
        image.AsSpan(100 * Block, Block).Clear();
        var inc2 = await rig.BackupAsync(rig.Source(image, Block, [
            new(100 * Block, Block, SourceRangeKind.Data),
            new(image.Length - 4096, 4096, SourceRangeKind.Data),
        ], "snap-3"));
        Assert.Equal(Sha256(image), Sha256(rig.Store.LatestImage(Agent, Volume)));
        Assert.Equal(4096, inc2.DataBytes); // the zeroed block went as a zero extent

        var points = rig.Store.ListPoints(Agent, Volume);
        Assert.Equal(["p1", "p2", "p3"], points.Select(p => p.Id));
        Assert.Equal([null, "p1", "p2"], points.Select(p => p.BasePoint));
        Assert.Equal(["snap-1", "snap-2", "snap-3"], points.Select(p => p.SourceSnapshot));
        Assert.Equal(inc2.Digest, rig.LastHashes!.ComputeDigest());
        Assert.Equal(3, rig.Receiver.Statistics.Commits);
        Assert.Equal(0, rig.Receiver.Statistics.Errors);
    }

    [Fact]
    public async Task ProgressCountsDataBytesApartFromZeroAndDiscardRanges()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(16 * 1024 * 1024, seed: 9);
        image.AsSpan(4 * Block, 60 * Block).Clear();
        image.AsSpan(200 * Block).Clear();
        // A full backup's shape: data, a long unmapped stretch, data, unmapped to the end.
        var source = rig.Source(image, Block, [
            new(0, 4 * Block, SourceRangeKind.Data),
            new(4 * Block, 60 * Block, SourceRangeKind.Discard),
            new(64 * Block, 136 * Block, SourceRangeKind.Data),
            new(200 * Block, 56 * Block, SourceRangeKind.Discard),
        ], "snap-1");
        var seen = new List<BackupProgress>();
        var progress = new SynchronousProgress<BackupProgress>(p => { lock (seen) seen.Add(p); });
        await new BackupSender(FastSender).RunAsync(rig.AgentTransport, source, progress, CancellationToken.None);
        source.Hashes.Dispose();

        Assert.NotEmpty(seen);
        Assert.All(seen, p => Assert.Equal(140L * Block, p.DataTotal));
        Assert.All(seen, p => Assert.Equal(256L * Block, p.BytesTotal));
        Assert.All(seen, p => Assert.InRange(p.DataDone, 0, p.BytesDone));
        Assert.Equal(seen.Select(p => p.DataDone).Order(), seen.Select(p => p.DataDone));
        Assert.Equal(140L * Block, seen[^1].DataDone);
        Assert.Equal(256L * Block, seen[^1].BytesDone);
        // Durable positions inside the second data range count the first range whole, the discard not at all.
        Assert.All(seen.Where(p => p.BytesDone > 64L * Block && p.BytesDone < 200L * Block),
            p => Assert.Equal(p.BytesDone - 60L * Block, p.DataDone));
    }

    /// <summary>
    /// A receiver whose every durable point takes 40 ms, with a credit of 2 frames: the sender runs out
    /// of credit again and again, and the result says the receiver set the pace; its parts never add
    /// up to more than the whole.
    /// </summary>
    [Fact]
    public async Task TimingsShowTheWaitForASlowReceiver()
    {
        await using var rig = await StartAsync(new ReceiverOptions { CreditWindow = 2, DurableEvery = 1 });
        rig.Store.DurableDelay = TimeSpan.FromMilliseconds(40);
        var image = MakeImage(8 * 1024 * 1024, seed: 12); // at least 9 frames of at most 960 KiB
        var result = await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"));

        var t = result.Timings;
        Assert.True(rig.Store.MakeDurableCalls >= 9, $"{rig.Store.MakeDurableCalls} durable points");
        // Every frame past the first two waits for an earlier one's durable point.
        Assert.True(t.WaitingForReceiver >= TimeSpan.FromMilliseconds(40 * 5), $"waited {t.WaitingForReceiver} for the receiver");
        Assert.True(t.Framing > TimeSpan.Zero, "no time framing");
        Assert.True(t.Committing > TimeSpan.Zero, "no time committing");
        var parts = t.Framing + t.Publishing + t.WaitingForReceiver + t.Committing;
        Assert.True(parts <= result.Elapsed, $"the parts ({parts}) exceed the whole ({result.Elapsed})");
    }

    private sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    [Fact]
    public async Task OfferOfACommittedTargetGetsItsPointAgain()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(2 * 1024 * 1024, seed: 3);
        var first = await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"));
        var again = rig.Source(image, Block, Whole(image), "snap-1", full: true);
        var result = await new BackupSender(FastSender).RunAsync(rig.AgentTransport, again, null, CancellationToken.None);
        Assert.Equal(first.Point, result.Point);
        Assert.Equal(first.Digest, result.Digest);
        Assert.Equal(0, result.DataBytes);
        Assert.Equal(1, rig.Receiver.Statistics.Commits);
        Assert.Equal(first.Digest, again.Hashes.ComputeDigest()); // the table was completed without sending
        again.Hashes.Dispose();
    }

    [Fact]
    public async Task WireBytesFollowTheCompressedChangedBytes()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(8 * 1024 * 1024, seed: 4);
        await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"));
        var random = new Random(5);
        var ranges = new List<SourceRange>();
        for (int i = 0; i < 16; i++)
        {
            int at = (i * 7 + 1) * Block;
            if (i % 2 == 0)
                random.NextBytes(image.AsSpan(at, Block));
            else
                image.AsSpan(at, Block).Fill((byte)i);
            ranges.Add(new SourceRange(at, Block, SourceRangeKind.Data));
        }
        var result = await rig.BackupAsync(rig.Source(image, Block, ranges, "snap-2"));
        Assert.Equal(Sha256(image), Sha256(rig.Store.LatestImage(Agent, Volume)));

        using var zstd = new ZstdCompressor(3);
        var buffer = new byte[ZstdCompressor.MaxCompressedLength(Block)];
        long compressed = ranges.Sum(r => (long)zstd.Compress(image.AsSpan((int)r.Offset, (int)r.Length), buffer));
        long hashes = ranges.Count * 32L;
        Assert.InRange(result.WireBytes, compressed + hashes, (compressed + hashes) * 102 / 100 + 2048);
        Assert.True(result.WireBytes < 10L * Block, $"{result.WireBytes} wire bytes for 8 random and 8 constant blocks");
    }

    [Fact]
    public async Task AnOfferOnAnotherBaseIsRefusedAsATypedError()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(1024 * 1024, seed: 6);
        await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"));
        var source = new MemoryBackupSource(Agent, Volume, image, Block, "p7", "snap-2", Whole(image), rig.LastHashes!);
        var e = await Assert.ThrowsAsync<BackupRefusedException>(() => new BackupSender(FastSender).RunAsync(rig.AgentTransport, source, null, CancellationToken.None));
        Assert.Equal(WireErrorCode.BaseMismatch, e.Code);
        Assert.Contains("'p7'", e.ReceiverMessage);
        Assert.Contains("'p1'", e.ReceiverMessage);
        Assert.Single(rig.Store.ListPoints(Agent, Volume));
    }

    [Fact]
    public async Task AnUnknownVolumeIsRefusedAsATypedError()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(256 * 1024, seed: 7);
        var table = Integrity.BlockHashTable.Create(rig.Scratch.File("other.bin"), image.Length, Block);
        var source = new MemoryBackupSource(Agent, "other", image, Block, null, "snap-1", Whole(image), table);
        var e = await Assert.ThrowsAsync<BackupRefusedException>(() => new BackupSender(FastSender).RunAsync(rig.AgentTransport, source, null, CancellationToken.None));
        Assert.Equal(WireErrorCode.UnknownVolume, e.Code);
        Assert.Contains("host-1/other", e.ReceiverMessage);
        table.Dispose();
    }

    [Fact]
    public async Task ADigestMismatchDropsTheStagingAndIsRefused()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(2 * 1024 * 1024, seed: 8);
        await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"));
        image.AsSpan(5 * Block, Block).Fill(9);
        var source = rig.Source(image, Block, [new SourceRange(5 * Block, Block, SourceRangeKind.Data)], "snap-2");
        source.Hashes.Set(0, new byte[WireProtocol.BlockHashSize]); // the agent's table disagrees with the receiver's base about block 0
        var e = await Assert.ThrowsAsync<BackupRefusedException>(() => new BackupSender(FastSender).RunAsync(rig.AgentTransport, source, null, CancellationToken.None));
        Assert.Equal(WireErrorCode.DigestMismatch, e.Code);
        Assert.Contains("staging is dropped", e.ReceiverMessage);
        Assert.Null(rig.Store.StagingSnapshot(Agent, Volume));
        Assert.Single(rig.Store.ListPoints(Agent, Volume));
        source.Hashes.Dispose();
    }

    [Fact]
    public async Task AFullPoolIsRefusedAsNoSpace()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(4 * 1024 * 1024, seed: 9);
        rig.Store.SpaceLeft = 1024 * 1024;
        var source = rig.Source(image, Block, Whole(image), "snap-1");
        var e = await Assert.ThrowsAsync<BackupRefusedException>(() => new BackupSender(FastSender).RunAsync(rig.AgentTransport, source, null, CancellationToken.None));
        Assert.Equal(WireErrorCode.NoSpace, e.Code);
        Assert.Empty(rig.Store.ListPoints(Agent, Volume));
        source.Hashes.Dispose();
    }

    [Fact]
    public async Task AWriteThatFailsBehindTheNextFrameIsResentAndTheImageIsWhole()
    {
        // The receiver writes a frame while it verifies the next; a failed write is found then, the
        // staging goes back to its durable state and the agent resends from there.
        await using var rig = await StartAsync();
        var image = MakeImage(24 * 1024 * 1024, seed: 11);
        rig.Store.FailWriteAt = 20L * 1024 * 1024 + 5 * Block; // past the first durable point (16 frames of at most 960 KiB)
        var result = await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"));
        Assert.Null(rig.Store.FailWriteAt); // the failure happened
        Assert.True(result.Resumed);
        Assert.Equal(Sha256(image), Sha256(rig.Store.LatestImage(Agent, Volume)));
        Assert.Equal(result.Digest, rig.Store.LatestHashes(Agent, Volume).ComputeDigest());
        var stats = rig.Receiver.Statistics;
        Assert.Equal(1, stats.ErrorsOf(WireErrorCode.Internal)); // the write; frames already sent behind it are out of sequence
        Assert.Equal(stats.Errors, stats.ErrorsOf(WireErrorCode.Internal) + stats.ErrorsOf(WireErrorCode.OutOfSequence));
        Assert.Equal(1, rig.Receiver.Statistics.Commits);
    }

    [Fact]
    public void OptionsNameWhatIsWrong()
    {
        Assert.Equal("CompressionLevel", Assert.ThrowsAny<ArgumentException>(() => new BackupSender(new BackupSenderOptions { CompressionLevel = 99 })).ParamName);
        Assert.Equal("AckTimeout", Assert.ThrowsAny<ArgumentException>(() => new BackupSenderOptions { AckTimeout = TimeSpan.Zero }.Validate()).ParamName);
        Assert.Equal("MaxAttempts", Assert.ThrowsAny<ArgumentException>(() => new BackupSenderOptions { MaxAttempts = 0 }.Validate()).ParamName);
        Assert.Equal("Deadline", Assert.ThrowsAny<ArgumentException>(() => new BackupSenderOptions { Deadline = TimeSpan.FromSeconds(-1) }.Validate()).ParamName);
        Assert.Equal("CreditWindow", Assert.ThrowsAny<ArgumentException>(() => new ReceiverOptions { CreditWindow = 0 }.Validate()).ParamName);
        var e = Assert.ThrowsAny<ArgumentException>(() => new ReceiverOptions { CreditWindow = 4, DurableEvery = 5 }.Validate());
        Assert.Equal("DurableEvery", e.ParamName);
        Assert.Equal("IdleTimeout", Assert.ThrowsAny<ArgumentException>(() => new ReceiverOptions { IdleTimeout = TimeSpan.FromSeconds(-1) }.Validate()).ParamName);
    }

    [Fact]
    public void BadSourcesAreRefusedBeforeAnythingIsSent()
    {
        using var scratch = new ScratchDirectory();
        var image = new byte[4 * Block];
        using var table = Integrity.BlockHashTable.Create(scratch.File("t.bin"), image.Length, Block);
        ArgumentException Bad(IReadOnlyList<SourceRange> ranges, string agent = Agent) =>
            Assert.Throws<ArgumentException>(() => BackupSender.OfferFor(new MemoryBackupSource(agent, Volume, image, Block, null, "s", ranges, table)));
        Assert.Contains("range 1", Bad([new(0, Block, SourceRangeKind.Data), new(Block / 2, Block, SourceRangeKind.Data)]).Message);
        Assert.Contains("past the image size", Bad([new(3 * Block, 2 * Block, SourceRangeKind.Zero)]).Message);
        Assert.Contains("block", Bad([new(100, Block, SourceRangeKind.Data)]).Message);
        Assert.Contains("agent", Bad([], agent: "a.b").Message);
    }
}
