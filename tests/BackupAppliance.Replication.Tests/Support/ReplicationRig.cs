using System.Security.Cryptography;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Sending;
using BackupAppliance.Replication.Transport;

namespace BackupAppliance.Replication.Tests.Support;

/// <summary>
/// An agent and a receiver on one in-memory broker, with a memory store: runs backups of one
/// volume one after the other, each an increment of the last committed point, as the agent would.
/// </summary>
public sealed class ReplicationRig : IAsyncDisposable
{
    public const string Agent = "host-1";
    public const string Volume = "vol_a";

    private readonly ReceiverOptions? _receiverOptions;
    private int _tables;

    private ReplicationRig(ReceiverOptions? receiverOptions)
    {
        _receiverOptions = receiverOptions;
        Store = new MemoryReplicaStore(Scratch.Path, (Agent, Volume));
        ReceiverTransport = Broker.Connect();
        AgentTransport = Broker.Connect();
        Receiver = new BackupReceiver(ReceiverTransport, Store, receiverOptions);
    }

    public ScratchDirectory Scratch { get; } = new();
    public InMemoryBroker Broker { get; } = new();
    public MemoryReplicaStore Store { get; }
    public InMemoryTransport ReceiverTransport { get; }
    public InMemoryTransport AgentTransport { get; }
    public BackupReceiver Receiver { get; private set; }

    /// <summary>The agent's last committed point and its hash table (the base of the next backup).</summary>
    public string? LastPoint { get; private set; }
    public BlockHashTable? LastHashes { get; private set; }

    /// <summary>Timeouts short enough that tests of loss finish quickly (they assert on bytes, never on time).</summary>
    public static BackupSenderOptions FastSender { get; } = new()
    {
        OfferTimeout = TimeSpan.FromMilliseconds(300),
        AckTimeout = TimeSpan.FromMilliseconds(300),
        RetryDelay = TimeSpan.FromMilliseconds(50),
        MaxAttempts = 40,
    };

    public static async Task<ReplicationRig> StartAsync(ReceiverOptions? receiverOptions = null)
    {
        var rig = new ReplicationRig(receiverOptions);
        await rig.Receiver.StartAsync(CancellationToken.None);
        return rig;
    }

    /// <summary>A source of <paramref name="image"/> as an increment of the last point (or full), with a hash table copied from the last.</summary>
    public MemoryBackupSource Source(byte[] image, int blockSize, IReadOnlyList<SourceRange> ranges, string target, bool full = false)
    {
        var hashes = BlockHashTable.Create(Scratch.File($"agent-{++_tables}.bin"), image.Length, blockSize, full ? null : LastHashes);
        return new MemoryBackupSource(Agent, Volume, image, blockSize, full ? null : LastPoint, target, ranges, hashes);
    }

    /// <summary>The whole image as one data range.</summary>
    public static SourceRange[] Whole(byte[] image) => [new SourceRange(0, image.Length, SourceRangeKind.Data)];

    public async Task<BackupResult> BackupAsync(MemoryBackupSource source, BackupSenderOptions? options = null, ITransport? transport = null)
    {
        var sender = new BackupSender(options ?? FastSender);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2)); // a hang fails instead of blocking the run
        var result = await sender.RunAsync(transport ?? AgentTransport, source, null, timeout.Token);
        LastHashes?.Dispose();
        LastPoint = result.Point;
        LastHashes = source.Hashes;
        return result;
    }

    /// <summary>Stops the receiver, loses what the store had not made durable, and starts a new receiver over it.</summary>
    public async Task RestartReceiverAsync()
    {
        await Receiver.DisposeAsync();
        Store.Crash();
        Receiver = new BackupReceiver(ReceiverTransport, Store, _receiverOptions);
        await Receiver.StartAsync(CancellationToken.None);
    }

    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>Deterministic test image: incompressible, text-like and all-zero blocks mixed.</summary>
    public static byte[] MakeImage(int size, int seed)
    {
        var random = new Random(seed);
        var image = new byte[size];
        for (int at = 0; at < size; at += 4096)
        {
            var block = image.AsSpan(at, Math.Min(4096, size - at));
            switch (random.Next(3))
            {
                case 0:
                    random.NextBytes(block);
                    break;
                case 1:
                    for (int i = 0; i < block.Length; i++)
                        block[i] = (byte)"replicated incremental block backups "[(i + at / 4096) % 37];
                    break;
            }
        }
        return image;
    }

    public async ValueTask DisposeAsync()
    {
        await Receiver.DisposeAsync();
        await AgentTransport.DisposeAsync();
        await ReceiverTransport.DisposeAsync();
        LastHashes?.Dispose();
        Store.Dispose();
        Scratch.Dispose();
    }
}
