using System.Diagnostics;
using Xunit.Abstractions;
using BackupAppliance.Replica.CrashWorkload;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Wire;
using BackupAppliance.Thin.Pool;
using static BackupAppliance.Replica.Tests.StoreAssert;

namespace BackupAppliance.Replica.Tests;

/// <summary>
/// kill -9 of a process that stages and publishes backups in a loop (a full, then increments, each
/// made durable frame by frame), at random moments, twice per run (the second time it resumes what
/// the first left). After each kill the reopened store lists only whole points, each equal byte for
/// byte to its image, thin_check and the pool check pass (no thin device is left without a name),
/// and a staging's progress record never claims more than what reads back from its volume and its
/// hash table.
/// </summary>
public sealed class ReplicaCrashTests(ITestOutputHelper output)
{
    private const string A = ReplicaWorkload.Agent;
    private const string V = ReplicaWorkload.Volume;

    public static TheoryData<int> Runs() => CrashRuns.Numbers(normal: 10, longRuns: 100);

    [Theory]
    [MemberData(nameof(Runs))]
    public async Task Kill9LeavesOnlyWholePointsAndHonestProgress(int run)
    {
        var rng = new Random(3000 + run);
        var w = ReplicaWorkload.ForCrashTest(run);
        using var dir = Tool.TempDir();
        string root = dir.File("store");
        for (int round = 0; round < 2; round++)
        {
            using (var child = StagingProcess.Start(root, run, points: 400))
            {
                await Task.Delay(rng.Next(20, 1500));
                child.Kill();
            }
            output.WriteLine(await AssertRecovered(root, w, $"run {run}, kill {round + 1}"));
        }
    }

    /// <summary>Checks the store after a kill; returns what it found, for the test's log.</summary>
    private static async Task<string> AssertRecovered(string root, ReplicaWorkload w, string context)
    {
        int points;
        Replication.Receiving.StagingState? staging;
        await using (var store = ReplicaStore.Open(root))
        {
            await PointsAreWhole(store, w, context);
            points = store.ListPoints(A, V).Count;
            staging = store.FindStaging(A, V);
        }
        string pool = Path.Combine(root, "pool");
        ThinCheckPasses(pool, context);
        // No thin device without a name: an interrupted create or delete was reclaimed at open.
        var poolCheck = PoolChecker.Check(pool);
        Assert.True(poolCheck.IsValid, $"{context}: pool check: {string.Join("; ", poolCheck.CatalogueProblems)}");
        if (staging is null)
            return $"{context}: {points} points, no staging";

        // The staging is of the next backup, and what its record claims is on disk.
        Assert.Equal(ReplicaWorkload.Target(points), staging.Request.Target);
        var extents = w.Extents(points);
        var claimed = extents.Take((int)staging.DurableSequence * ReplicaWorkload.FrameExtents).ToList();
        Assert.Equal(claimed.Count == 0 ? 0 : claimed[^1].Offset + claimed[^1].Length, staging.DurablePosition);
        Assert.Equal(claimed.Sum(e => e.Data?.Length ?? 0), staging.ChangedBytes);

        var expected = w.Image(points);
        int pos = (int)staging.DurablePosition;
        await using (var p = ThinPool.Open(pool))
        {
            var actual = new byte[pos];
            await p.OpenVolume($"{A}.{V}.staging").ReadAsync(0, actual, CancellationToken.None);
            long diff = FirstDifference(expected.AsSpan(0, pos).ToArray(), actual);
            Assert.True(diff < 0, $"{context}: the staging claims {pos} bytes durable, but byte {diff} differs from image {points}");
        }
        int blocks = pos / w.BlockSize;
        var expectedHashes = new byte[blocks * WireProtocol.BlockHashSize];
        BlockHashes.Compute(expected.AsSpan(0, blocks * w.BlockSize), w.BlockSize, expectedHashes);
        using var table = BlockHashTable.Open(Path.Combine(root, "staging", A, V, "hashes"), w.Size, w.BlockSize);
        var hashes = new byte[expectedHashes.Length];
        table.Get(0, hashes);
        Assert.True(expectedHashes.AsSpan().SequenceEqual(hashes), $"{context}: the staging's hash table differs from image {points} below the durable position {pos}");
        return $"{context}: {points} points, staging of {staging.Request.Target} durable to frame {staging.DurableSequence} of {w.Frames(points)}";
    }

    /// <summary>The crash workload as a child process: started, waited for until it has opened the store, killed with SIGKILL.</summary>
    private sealed class StagingProcess : IDisposable
    {
        private readonly Process _p;

        private StagingProcess(Process p) => _p = p;

        public static StagingProcess Start(string store, int seed, int points)
        {
            string dll = Path.Combine(AppContext.BaseDirectory, "BackupAppliance.Replica.CrashWorkload.dll");
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { dll, store, seed.ToString(), points.ToString() })
                psi.ArgumentList.Add(a);
            var p = Process.Start(psi)!;
            var err = p.StandardError.ReadToEndAsync();
            string? line = p.StandardOutput.ReadLine();
            if (line != "ready")
            {
                p.WaitForExit();
                throw new InvalidOperationException($"the staging process did not start: {line}; {err.Result}");
            }
            return new StagingProcess(p);
        }

        public void Kill()
        {
            Assert.False(_p.HasExited, "the staging process finished before the kill: raise its point count");
            _p.Kill(entireProcessTree: true);
            _p.WaitForExit();
        }

        public void Dispose()
        {
            if (!_p.HasExited)
                Kill();
            _p.Dispose();
        }
    }
}
