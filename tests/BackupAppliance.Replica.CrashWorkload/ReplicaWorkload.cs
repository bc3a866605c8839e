using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replica.CrashWorkload;

/// <summary>What an extent of a workload backup does (as the wire's extent kinds).</summary>
public enum ExtentKind
{
    Data,
    Zero,
    Discard,
}

/// <summary>One extent of a backup: bytes for data, nothing for zero and discard.</summary>
public sealed record WorkloadExtent(ExtentKind Kind, long Offset, long Length, byte[]? Data);

/// <summary>
/// A seeded chain of backups of one image, as the protocol engine would apply them: backup 0 is a
/// full (data and zero extents covering the whole image), every later one an increment of random
/// data, zero and discard extents at block granularity, ascending. Extents go in frames of
/// <see cref="FrameExtents"/>; each frame ends with <see cref="IStagedPoint.MakeDurableAsync"/>, so a
/// resume continues after the last durable frame. The expected image after backup k is computed
/// independently of any store.
/// </summary>
public sealed class ReplicaWorkload
{
    public const string Agent = "agent-1";
    public const string Volume = "vol_a";
    public const int FrameExtents = 2;

    public ReplicaWorkload(int seed, long size = 16L << 20, int blockSize = 4096, double fullDataShare = 0.6)
    {
        Seed = seed;
        Size = size;
        BlockSize = blockSize;
        FullDataShare = fullDataShare;
    }

    public int Seed { get; }
    public long Size { get; }
    public int BlockSize { get; }
    public double FullDataShare { get; }
    private long Blocks => (Size + BlockSize - 1) / BlockSize;

    public static string Target(int backup) => $"img-{backup}";

    /// <summary>The extents of backup <paramref name="backup"/>, ascending and not overlapping.</summary>
    public IReadOnlyList<WorkloadExtent> Extents(int backup)
    {
        var rng = new Random(Seed * 7919 + backup);
        var list = new List<WorkloadExtent>();
        long block = 0;
        while (block < Blocks)
        {
            long run = backup == 0 ? 1 + rng.Next(64) : 1 + rng.Next(8);
            long gap = backup == 0 ? 0 : rng.Next((int)Math.Max(1, Blocks / 16));
            block += gap;
            if (block >= Blocks)
                break;
            run = Math.Min(run, Blocks - block);
            long offset = block * BlockSize, length = Math.Min(run * BlockSize, Size - offset);
            var kind = backup == 0
                ? (rng.NextDouble() < FullDataShare ? ExtentKind.Data : ExtentKind.Zero)
                : rng.Next(10) switch { < 6 => ExtentKind.Data, < 8 => ExtentKind.Zero, _ => ExtentKind.Discard };
            byte[]? data = null;
            if (kind == ExtentKind.Data)
            {
                data = new byte[length];
                rng.NextBytes(data);
                if (rng.Next(4) == 0)
                    Array.Clear(data, 0, Math.Min(BlockSize, data.Length)); // data that happens to be zeros
            }
            list.Add(new WorkloadExtent(kind, offset, length, data));
            block += run;
        }
        return list;
    }

    /// <summary>The workload the kill -9 test and its child process share: small, so many points fit a run.</summary>
    public static ReplicaWorkload ForCrashTest(int seed) => new(seed, size: 4L << 20);

    /// <summary>The image after backups 0..<paramref name="backup"/>.</summary>
    public byte[] Image(int backup)
    {
        var image = new byte[Size];
        for (int k = 0; k <= backup; k++)
            ApplyTo(image, k);
        return image;
    }

    /// <summary>Turns the image after backup <paramref name="backup"/> - 1 into the one after it.</summary>
    public void ApplyTo(byte[] image, int backup)
    {
        foreach (var e in Extents(backup))
        {
            if (e.Data is { } d)
                d.CopyTo(image, e.Offset);
            else
                Array.Clear(image, (int)e.Offset, (int)e.Length);
        }
    }

    /// <summary>The image digest of an image (what the agent's commit carries).</summary>
    public byte[] Digest(byte[] image)
    {
        using var digest = new ImageDigest(image.Length, BlockSize);
        var hashes = new byte[BlockHashes.Count(image.Length, BlockSize) * WireProtocol.BlockHashSize];
        BlockHashes.Compute(image, BlockSize, hashes);
        digest.AppendHashes(hashes);
        return digest.Finish();
    }

    public int Frames(int backup) => (Extents(backup).Count + FrameExtents - 1) / FrameExtents;

    /// <summary>
    /// Applies frames after the staging's durable sequence (data frames are numbered from 1), each
    /// followed by MakeDurable; <paramref name="lastFrame"/> stops early (durable, not published).
    /// </summary>
    public async Task ApplyAsync(IStagedPoint staged, int backup, int? lastFrame = null, bool makeDurable = true)
    {
        var extents = Extents(backup);
        long changed = staged.State.ChangedBytes;
        int frames = Frames(backup);
        for (int f = (int)staged.State.DurableSequence; f < Math.Min(frames, lastFrame ?? frames); f++)
        {
            long end = 0;
            // Even frames write their data extents with one gathered write, as the receiver does;
            // odd ones one extent at a time.
            bool gathered = f % 2 == 0;
            var writes = new List<StagedWrite>();
            var data = new List<byte>();
            foreach (var e in extents.Skip(f * FrameExtents).Take(FrameExtents))
            {
                if (e.Data is { } d)
                {
                    var hashes = new byte[BlockHashes.Count(d.Length, BlockSize) * WireProtocol.BlockHashSize];
                    BlockHashes.Compute(d, BlockSize, hashes);
                    if (gathered)
                    {
                        writes.Add(new StagedWrite(e.Offset, d.Length, hashes));
                        data.AddRange(d);
                    }
                    else
                        await staged.WriteAsync(e.Offset, d, hashes, CancellationToken.None);
                    changed += d.Length;
                }
                else
                    await staged.ZeroAsync(e.Offset, e.Length, e.Kind == ExtentKind.Discard, CancellationToken.None);
                end = e.Offset + e.Length;
            }
            if (writes.Count > 0)
                await staged.WriteAsync(writes, data.ToArray(), CancellationToken.None);
            if (makeDurable)
                await staged.MakeDurableAsync((ulong)f + 1, end, changed, CancellationToken.None);
        }
    }

    /// <summary>Stages backup <paramref name="backup"/> over the store's latest point (or resumes it) and publishes it.</summary>
    public async Task<ReplicaPoint> BackupAsync(ReplicaStore store, int backup)
    {
        await using var staged = await StageAsync(store, backup);
        await ApplyAsync(staged, backup);
        return await staged.PublishAsync(staged.ComputeDigest(), CancellationToken.None);
    }

    /// <summary>Resumes the staging of <paramref name="backup"/> if there is one, otherwise begins it over the latest point.</summary>
    public async Task<IStagedPoint> StageAsync(ReplicaStore store, int backup)
    {
        if (store.FindStaging(Agent, Volume) is { } s && s.Request.Target == Target(backup))
            return await store.ResumeStagingAsync(Agent, Volume, CancellationToken.None);
        string? basePoint = backup == 0 ? null : store.FindPoint(Agent, Volume, ReplicaStore.Latest)!.Id;
        return await store.BeginStagingAsync(new StagingRequest(Agent, Volume, (ulong)backup + 1, basePoint, Target(backup), Size, BlockSize), CancellationToken.None);
    }
}
