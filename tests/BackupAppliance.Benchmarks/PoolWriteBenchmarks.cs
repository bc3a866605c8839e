using BackupAppliance.Thin.Pool;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;

namespace BackupAppliance.Benchmarks;

/// <summary>
/// Writes into a <see cref="ThinPool"/> volume of <see cref="Blocks"/> 64 KiB blocks, per write:
/// overwrites of unshared blocks (in place under the lock: what the NBD server runs inline on its
/// receive loop; budget 0 B allocated) and writes that break sharing with a snapshot taken just
/// before (a new block allocated, filled with the lock released, then mapped), one at a time and
/// 16 at once. The pool lives in a sparse temp folder with its usual one-second commit. Each
/// iteration deletes the previous snapshot, so the page-cache memory of the blocks it frees is
/// reused at once: the most favourable case for filling through the page cache, against which the
/// direct writes of copies are measured here.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class PoolWriteBenchmarks
{
    public const int Blocks = 1024;
    private const int Bs = 64 * 1024;
    private const int Big = 1 << 20;

    private readonly byte[] _data = new byte[Big];
    private string _dir = "";
    private ThinPool _pool = null!;
    private ThinVolume _volume = null!;
    private string? _snapshot;

    [GlobalSetup]
    public void GlobalSetup()
    {
        new Random(42).NextBytes(_data);
        _dir = Path.Combine(Path.GetTempPath(), $"bapp-bench-pool-{Guid.NewGuid():N}");
        _pool = ThinPool.Create(_dir, 4L * Blocks * Bs, new PoolSettings());
        _volume = _pool.CreateVolume("v", (long)Blocks * Bs);
        for (long at = 0; at < (long)Blocks * Bs; at += Big)
            _volume.WriteAsync(at, _data, false, default).AsTask().GetAwaiter().GetResult();
    }

    [GlobalCleanup]
    public void GlobalCleanup()
    {
        _pool.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Every block shared again: the previous snapshot goes (its blocks are freed), a new one is taken.</summary>
    [IterationSetup(Targets = [nameof(BreakSharing4K), nameof(BreakSharing1M), nameof(BreakSharing4KSixteenAtOnce)])]
    public void Snapshot()
    {
        if (_snapshot is not null)
            _pool.DeleteVolume(_snapshot);
        _snapshot = $"s{Guid.NewGuid():N}";
        _pool.Snapshot("v", _snapshot);
    }

    [Benchmark(OperationsPerInvoke = Blocks)]
    public Task Overwrite4K() => Write4KIntoEveryBlock();

    [Benchmark(OperationsPerInvoke = Blocks * Bs / Big)]
    public Task Overwrite1M() => Write1MOverTheVolume();

    [Benchmark(OperationsPerInvoke = Blocks)]
    public Task BreakSharing4K() => Write4KIntoEveryBlock();

    [Benchmark(OperationsPerInvoke = Blocks * Bs / Big)]
    public Task BreakSharing1M() => Write1MOverTheVolume();

    /// <summary>Sixteen writers (an NBD connection's requests in flight) break the sharing of every block once.</summary>
    [Benchmark(OperationsPerInvoke = Blocks)]
    public async Task BreakSharing4KSixteenAtOnce()
    {
        int next = -1;
        var writers = new Task[16];
        for (int w = 0; w < writers.Length; w++)
        {
            writers[w] = Task.Run(async () =>
            {
                int b;
                while ((b = Interlocked.Increment(ref next)) < Blocks)
                    await _volume.WriteAsync(Offset4K(b), _data.AsMemory(0, 4096), false, default);
            });
        }
        await Task.WhenAll(writers);
    }

    private async Task Write4KIntoEveryBlock()
    {
        for (int b = 0; b < Blocks; b++)
            await _volume.WriteAsync(Offset4K(b), _data.AsMemory(0, 4096), false, default);
    }

    private async Task Write1MOverTheVolume()
    {
        for (long at = 0; at < (long)Blocks * Bs; at += Big)
            await _volume.WriteAsync(at, _data, false, default);
    }

    /// <summary>A 4 KiB slot in block <paramref name="b"/>, a different one from block to block.</summary>
    private static long Offset4K(int b) => (long)b * Bs + (b * 7 % 16) * 4096L;
}
