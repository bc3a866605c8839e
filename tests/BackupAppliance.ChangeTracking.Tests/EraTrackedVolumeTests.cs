using BackupAppliance.Core;
using BackupAppliance.Era;
using BackupAppliance.Era.Tracking;
using BackupAppliance.TestSupport;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.ChangeTracking.Tests;

public sealed class EraTrackedVolumeTests
{
    private const int BlockSize = 64 * 1024;

    /// <summary>dm-era's rule: by the time a write reaches the volume below, its block's bit is committed on disk.</summary>
    [Fact]
    public async Task TheMarkIsCommittedBeforeTheWriteReachesTheVolume()
    {
        using var dir = Tool.TempDir();
        string eraFile = dir.File("v.era");
        var inner = new MemoryBlockVolume("v", 64L * BlockSize, BlockSize);
        using var tracker = EraTracker.Create(eraFile, BlockSize, inner.Size, new EraTrackerOptions { DigestInterval = TimeSpan.Zero });
        var seen = new List<(long Offset, List<(uint, uint)> Committed)>();
        var probe = new ProbeVolume(inner, offset =>
        {
            // What a crash right now would leave: a copy of the file opened as the kernel would after a crash.
            string copy = dir.File($"copy-{seen.Count}.era");
            File.Copy(eraFile, copy, overwrite: true);
            using var md = EraMetadata.Open(copy, EraOpenMode.Activate);
            var runs = new List<(uint, uint)>();
            md.WrittenSince(tracker.CurrentEra, (f, e) => runs.Add((f, e)));
            seen.Add((offset, runs));
        });
        var v = new EraTrackedVolume(probe, tracker);
        await v.WriteAsync(5L * BlockSize + 100, new byte[10], fua: false, CancellationToken.None);
        await v.WriteAsync(9L * BlockSize - 1, new byte[2], fua: false, CancellationToken.None); // spans blocks 8 and 9
        Assert.Equal(2, seen.Count);
        Assert.Contains((5u, 6u), seen[0].Committed);
        Assert.Contains(seen[1].Committed, r => r.Item1 <= 5 && r.Item2 >= 6);
        Assert.Contains(seen[1].Committed, r => r.Item1 <= 8 && r.Item2 >= 10);
    }

    /// <summary>
    /// Writes into unmarked blocks that one thread starts back to back (an NBD connection's thread
    /// reading pipelined requests) share mark commits: the commit does not run on the caller's
    /// thread, which would make each call commit its own mark before returning (one commit per write).
    /// </summary>
    [Fact]
    public async Task WritesStartedBackToBackShareMarkCommits()
    {
        const int Writes = 64;
        using var dir = Tool.TempDir();
        string eraFile = dir.File("v.era");
        var inner = new MemoryBlockVolume("v", 2L * Writes * BlockSize, BlockSize);
        using var tracker = EraTracker.Create(eraFile, BlockSize, inner.Size, new EraTrackerOptions { DigestInterval = TimeSpan.Zero });
        var v = new EraTrackedVolume(inner, tracker);
        var writes = new List<Task>();
        for (int i = 0; i < Writes; i++)
            writes.Add(v.WriteAsync(2L * i * BlockSize + 512, new byte[] { (byte)(i + 1) }, fua: false, CancellationToken.None).AsTask());
        await Task.WhenAll(writes);
        Assert.InRange(tracker.MarkCommits, 1, Writes / 2);
        // Every mark is on disk, and every write reached the volume.
        string copy = dir.File("copy.era");
        File.Copy(eraFile, copy);
        using (var md = EraMetadata.Open(copy, EraOpenMode.Activate))
        {
            var marked = new List<(uint, uint)>();
            md.WrittenSince(tracker.CurrentEra, (f, e) => marked.Add((f, e)));
            Assert.Equal(Enumerable.Range(0, Writes).Select(i => ((uint)(2 * i), (uint)(2 * i + 1))), marked);
        }
        var one = new byte[1];
        for (int i = 0; i < Writes; i++)
        {
            await inner.ReadAsync(2L * i * BlockSize + 512, one, CancellationToken.None);
            Assert.Equal((byte)(i + 1), one[0]);
        }
    }

    [Fact]
    public async Task DiscardsAndZeroingMarkOnlyBlocksWhoseContentTheyChange()
    {
        using var dir = Tool.TempDir();
        await using var pool = TrackedPool.Create(dir.File("pool"), 64L << 20, new PoolSettings { DataBlockSize = BlockSize }, commitInterval: TimeSpan.Zero);
        var v = pool.CreateVolume("v", 32L * BlockSize);
        await v.WriteAsync(2L * BlockSize, new byte[BlockSize], fua: false, CancellationToken.None); // block 2 mapped (zeroes)
        await v.WriteAsync(6L * BlockSize, new byte[] { 7 }, fua: false, CancellationToken.None);      // block 6 mapped
        var snap = await pool.SnapshotAsync("v", "s", CancellationToken.None);
        uint era = (uint)snap.ChangeEpoch!.Value;
        await v.DiscardAsync(0, 5L * BlockSize, fua: false, CancellationToken.None);                 // unmaps block 2 only
        await v.DiscardAsync(6L * BlockSize + 1, BlockSize, fua: false, CancellationToken.None);     // partial: nothing
        await v.WriteZeroesAsync(10L * BlockSize, 3L * BlockSize, noHole: false, fua: false, CancellationToken.None); // holes: nothing
        await v.WriteZeroesAsync(20L * BlockSize, 100, noHole: true, fua: false, CancellationToken.None);             // provisions block 20
        var set = await pool.ChangesSinceEraAsync("v", era, asOf: null, CancellationToken.None);
        Assert.Equal(new long[] { 2 }, set.Blocks(unmapped: true).ToArray());
        Assert.Equal(new long[] { 20 }, set.Blocks(unmapped: false).ToArray());
    }

    /// <summary>
    /// Snapshots taken while writers run: the checkpoint holds writes back, so each write lands on
    /// exactly one side, and the era set since a snapshot equals the diff to the next one.
    /// </summary>
    [Fact]
    public async Task CheckpointsUnderConcurrentWritesSplitTheWritesExactly()
    {
        using var dir = Tool.TempDir();
        await using var pool = TrackedPool.Create(dir.File("pool"), 512L << 20, new PoolSettings { DataBlockSize = BlockSize }, commitInterval: TimeSpan.FromMilliseconds(10));
        var v = pool.CreateVolume("v", 256L * BlockSize);
        using var stop = new CancellationTokenSource();
        long completed = 0;
        var writers = Enumerable.Range(0, 6).Select(w => Task.Run(async () =>
        {
            var rng = new Random(w);
            var buf = new byte[4096];
            while (!stop.IsCancellationRequested)
            {
                rng.NextBytes(buf);
                await v.WriteAsync(rng.NextInt64(256) * BlockSize + rng.Next(BlockSize - 4096), buf, fua: false, CancellationToken.None);
                Interlocked.Increment(ref completed);
            }
        })).ToArray();
        var snaps = new List<Thin.Pool.VolumeEntry>();
        for (int i = 0; i < 6; i++)
        {
            // Writes between every two snapshots however loaded the machine is (a fixed pause may
            // pass without any on a busy CI machine), and writers still running as each is taken.
            long before = Interlocked.Read(ref completed);
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (Interlocked.Read(ref completed) < before + 20 && DateTime.UtcNow < deadline)
                await Task.Delay(5);
            Assert.True(Interlocked.Read(ref completed) >= before + 20, $"the writers completed {Interlocked.Read(ref completed) - before} writes in 60 s before snapshot {i}");
            snaps.Add(await pool.SnapshotAsync("v", $"s{i}", CancellationToken.None));
        }
        stop.Cancel();
        await Task.WhenAll(writers);
        for (int i = 0; i + 1 < snaps.Count; i++)
        {
            var byEra = await pool.ChangesSinceEraAsync("v", (uint)snaps[i].ChangeEpoch!.Value, asOf: snaps[i + 1].Name, CancellationToken.None);
            var byDiff = pool.ChangesSinceSnapshot(snaps[i + 1].Name, snaps[i].Name);
            Assert.NotEmpty(byDiff.Extents);
            Assert.Equal(byDiff.Blocks(unmapped: false).Order(), byEra.Blocks(unmapped: false).Order());
        }
    }

    [Fact]
    public async Task AVolumeReopenedAfterACleanCloseKeepsItsChangesAndStartsANewEra()
    {
        using var dir = Tool.TempDir();
        string poolDir = dir.File("pool");
        uint era;
        await using (var pool = TrackedPool.Create(poolDir, 64L << 20, new PoolSettings { DataBlockSize = BlockSize }, commitInterval: TimeSpan.Zero))
        {
            var v = pool.CreateVolume("v", 16L * BlockSize);
            era = pool.Status("v").CurrentEra!.Value;
            await v.WriteAsync(3L * BlockSize, new byte[] { 1 }, fua: false, CancellationToken.None);
        }
        await using (var pool = TrackedPool.Open(poolDir, commitInterval: TimeSpan.Zero))
        {
            Assert.Equal(era, pool.Status("v").CurrentEra); // read-only until a write path opens the volume
            var v = pool.OpenVolume("v");
            Assert.True(pool.Status("v").CurrentEra > era);
            await v.WriteAsync(7L * BlockSize, new byte[] { 1 }, fua: false, CancellationToken.None);
            var set = await pool.ChangesSinceEraAsync("v", era, asOf: null, CancellationToken.None);
            Assert.Equal(new long[] { 3, 7 }, set.Blocks().ToArray());
            var later = await pool.ChangesSinceEraAsync("v", pool.Status("v").CurrentEra!.Value, asOf: null, CancellationToken.None);
            Assert.Equal(new long[] { 7 }, later.Blocks().ToArray());
        }
    }

    /// <summary>
    /// The background digest folds writesets older than the kept ones into the era array; answers
    /// for old eras come from the array then and stay right (newest era wins), recent ones from writesets.
    /// </summary>
    [Fact]
    public async Task DigestKeepsTheNewestWritesetsAndOldAnswersStayRight()
    {
        using var dir = Tool.TempDir();
        var inner = new MemoryBlockVolume("v", 64L * BlockSize, BlockSize);
        var options = new EraTrackerOptions { DigestInterval = TimeSpan.Zero, KeepUndigestedEras = 2, DigestBitsPerStep = 64 };
        using var tracker = EraTracker.Create(dir.File("v.era"), BlockSize, inner.Size, options);
        var v = new EraTrackedVolume(inner, tracker);
        var eraOf = new Dictionary<uint, List<long>>();
        for (int round = 0; round < 6; round++)
        {
            uint era = tracker.CurrentEra;
            eraOf[era] = new List<long> { round, 10 + round, 40 };
            foreach (long b in eraOf[era])
                await v.WriteAsync(b * BlockSize, new byte[] { 1 }, fua: false, CancellationToken.None);
            await tracker.CheckpointAsync(null, CancellationToken.None);
        }
        Assert.Equal(6, tracker.ArchivedEras.Count);
        while (tracker.DigestStep())
        {
        }
        Assert.Equal(2, tracker.ArchivedEras.Count);
        Assert.Equal(tracker.CurrentEra - 2, tracker.ArchivedEras[0]);
        foreach (var (era, _) in eraOf)
        {
            var expected = eraOf.Where(x => x.Key >= era).SelectMany(x => x.Value).Distinct().Order().ToArray();
            var got = tracker.WrittenSince(era).SelectMany(r => Enumerable.Range((int)r.First, (int)(r.End - r.First)).Select(b => (long)b)).ToArray();
            Assert.Equal(expected, got);
        }
    }

    /// <summary>Calls a probe before each write is passed down.</summary>
    private sealed class ProbeVolume(IBlockVolume inner, Action<long> beforeWrite) : IBlockVolume
    {
        public string Name => inner.Name;
        public long Size => inner.Size;
        public int BlockSize => inner.BlockSize;
        public bool IsReadOnly => inner.IsReadOnly;
        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken ct) => inner.ReadAsync(offset, buffer, ct);
        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken ct)
        {
            beforeWrite(offset);
            return inner.WriteAsync(offset, data, fua, ct);
        }
        public ValueTask DiscardAsync(long offset, long length, bool fua, CancellationToken ct) => inner.DiscardAsync(offset, length, fua, ct);
        public ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua, CancellationToken ct) => inner.WriteZeroesAsync(offset, length, noHole, fua, ct);
        public ValueTask FlushAsync(CancellationToken ct) => inner.FlushAsync(ct);
        public ValueTask<IReadOnlyList<VolumeExtent>> GetAllocationAsync(long offset, long length, CancellationToken ct) => inner.GetAllocationAsync(offset, length, ct);
    }
}
