using System.Collections.Concurrent;
using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Replication.Wire;
using static BackupAppliance.Replication.Tests.Support.ReplicationRig;

namespace BackupAppliance.Replication.Tests;

/// <summary>Lost, repeated and damaged messages and a receiver restart: every backup still completes with the same image.</summary>
public class ReplicationFaultTests
{
    private const int Block = 64 * 1024;

    private static WireFrame? Peek(ReadOnlyMemory<byte> payload)
    {
        try
        {
            return FrameDecoder.Decode(payload);
        }
        catch (WireFormatException)
        {
            return null;
        }
    }

    /// <summary>Drops the first of each message the predicate picks: data frames by sequence number, replies by type.</summary>
    private static Func<TransportMessage, bool> DropOnce(Func<WireFrame, bool> pick)
    {
        var dropped = new ConcurrentDictionary<string, bool>();
        return m => Peek(m.Payload) is { } f && pick(f)
            && dropped.TryAdd(f.Message is DataFrame ? $"data:{f.Sequence}" : f.Message.Type.ToString(), true);
    }

    [Fact]
    public async Task LostDataFramesAreResent()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(20 * 1024 * 1024, seed: 11);
        rig.Broker.DropWhere(DropOnce(f => f.Message is DataFrame && f.Sequence is 2 or 7 or 8 or 21));
        var result = await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"));
        Assert.Equal(Sha256(image), Sha256(rig.Store.LatestImage(Agent, Volume)));
        Assert.True(rig.Broker.Dropped >= 3, $"{rig.Broker.Dropped} dropped");
        Assert.True(rig.Receiver.Statistics.ErrorsOf(WireErrorCode.OutOfSequence) > 0);
        Assert.Equal(result.Digest, rig.Store.LatestHashes(Agent, Volume).ComputeDigest());
    }

    [Fact]
    public async Task LostRepliesAreRecoveredByOfferingAgain()
    {
        // A window small enough that the image needs several acks and credits.
        await using var rig = await StartAsync(new ReceiverOptions { CreditWindow = 16, DurableEvery = 8 });
        var image = MakeImage(20 * 1024 * 1024, seed: 12);
        int acks = 0;
        rig.Broker.DropWhere(m => Peek(m.Payload)?.Message switch
        {
            BackupBegin => Interlocked.Increment(ref acks) == 1,      // the first answer to the offer
            Ack or Credit => Interlocked.Increment(ref acks) <= 6,   // and the first acks and credits
            _ => false,
        });
        var result = await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"));
        Assert.Equal(Sha256(image), Sha256(rig.Store.LatestImage(Agent, Volume)));
        Assert.True(rig.Broker.Dropped >= 4, $"{rig.Broker.Dropped} dropped");
        Assert.True(rig.Receiver.Statistics.StreamsResumed >= 1);
        Assert.Equal(1, rig.Receiver.Statistics.Commits);
    }

    [Fact]
    public async Task ALostCommitAckIsAnsweredAgain()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(3 * 1024 * 1024, seed: 13);
        rig.Broker.DropWhere(DropOnce(f => f.Message is CommitAck));
        var result = await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"));
        Assert.Equal(1, rig.Broker.Dropped);
        Assert.Equal("p1", result.Point);
        Assert.Single(rig.Store.ListPoints(Agent, Volume));
        Assert.Equal(Sha256(image), Sha256(rig.Store.LatestImage(Agent, Volume)));
    }

    [Fact]
    public async Task ARestartedReceiverResumesWithoutTheDurableFrames()
    {
        await using var rig = await StartAsync(new ReceiverOptions { CreditWindow = 8, DurableEvery = 4 });
        var image = MakeImage(32 * 1024 * 1024, seed: 14);
        var restarted = false;
        var afterRestart = new ConcurrentQueue<ulong>();
        rig.Broker.DropWhere(m =>
        {
            if (Volatile.Read(ref restarted) && Peek(m.Payload) is { Message: DataFrame } f)
                afterRestart.Enqueue(f.Sequence);
            return false;
        });
        var durable = rig.Store.WhenDurable(12);
        var backup = rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"));
        await durable;
        await rig.RestartReceiverAsync();
        ulong durableAtRestart = rig.Store.StagingSnapshot(Agent, Volume)!.Value.State.DurableSequence;
        Volatile.Write(ref restarted, true);
        var result = await backup;

        Assert.Equal(Sha256(image), Sha256(rig.Store.LatestImage(Agent, Volume)));
        Assert.True(durableAtRestart >= 12, $"durable {durableAtRestart}");
        Assert.NotEmpty(afterRestart);
        Assert.DoesNotContain(afterRestart, seq => seq <= durableAtRestart);
        Assert.True(result.Resumed || rig.Receiver.Statistics.ErrorsOf(WireErrorCode.OutOfSequence) > 0);
    }

    [Fact]
    public async Task DuplicatedAndReplayedFramesChangeNothing()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(10 * 1024 * 1024, seed: 15);
        var sent = new ConcurrentQueue<byte[]>();
        var doubling = new TamperingTransport(rig.AgentTransport, (subject, bytes) =>
        {
            if (!subject.EndsWith(".data", StringComparison.Ordinal))
                return [bytes];
            sent.Enqueue(bytes);
            return [bytes, bytes];
        });
        await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"), transport: doubling);
        Assert.Equal(Sha256(image), Sha256(rig.Store.LatestImage(Agent, Volume)));
        Assert.True(rig.Receiver.Statistics.DuplicateFrames >= sent.Count - 1);

        // Replaying the whole stream after its commit: refused, the point unchanged.
        var before = Sha256(rig.Store.LatestImage(Agent, Volume));
        var replies = new ConcurrentQueue<WireFrame>();
        await using var listen = await rig.AgentTransport.SubscribeAsync(ReplicationSubjects.Reply(Agent, Volume), (m, _) =>
        {
            if (Peek(m.Payload) is { } f)
                replies.Enqueue(f);
            return ValueTask.CompletedTask;
        });
        foreach (var bytes in sent)
            await rig.AgentTransport.PublishAsync(ReplicationSubjects.Data(Agent, Volume), bytes);
        while (replies.Count < sent.Count)
            await Task.Delay(10);
        Assert.All(replies, f => Assert.Equal(WireErrorCode.UnknownStream, Assert.IsType<ErrorReply>(f.Message).Code));
        Assert.Equal(before, Sha256(rig.Store.LatestImage(Agent, Volume)));
        Assert.Single(rig.Store.ListPoints(Agent, Volume));
    }

    [Fact]
    public async Task DamagedFramesOnTheWireAreResent()
    {
        await using var rig = await StartAsync();
        var image = MakeImage(12 * 1024 * 1024, seed: 16);
        int data = 0;
        var damaging = new TamperingTransport(rig.AgentTransport, (subject, bytes) =>
        {
            if (!subject.EndsWith(".data", StringComparison.Ordinal))
                return [bytes];
            int n = Interlocked.Increment(ref data);
            if (n == 3)
                bytes[bytes.Length / 2] ^= 0x10; // crc32c catches it
            if (n == 6)
                return [bytes.AsSpan(0, bytes.Length - 100).ToArray()]; // cut short
            return [bytes];
        });
        await rig.BackupAsync(rig.Source(image, Block, Whole(image), "snap-1"), transport: damaging);
        Assert.Equal(Sha256(image), Sha256(rig.Store.LatestImage(Agent, Volume)));
        var stats = rig.Receiver.Statistics;
        Assert.Equal(1, stats.ErrorsOf(WireErrorCode.ChecksumMismatch));
        Assert.Equal(1, stats.ErrorsOf(WireErrorCode.Truncated));
    }
}
