using BackupAppliance.Replica.CrashWorkload;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Wire;
using BackupAppliance.Thin.Pool;
using static BackupAppliance.Replica.Tests.StoreAssert;

namespace BackupAppliance.Replica.Tests;

/// <summary>The replica store applying a full backup and increments: points, sharing, resume, replay, refusals.</summary>
public sealed class ReplicaStoreTests
{
    private const string A = ReplicaWorkload.Agent;
    private const string V = ReplicaWorkload.Volume;
    private const int PoolBlock = 64 * 1024;

    /// <summary>A clock that stands still unless moved, so ids collide on purpose.</summary>
    private sealed class ManualClock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static ReplicaStore NewStore(TempDir dir, ReplicaStoreOptions? options = null) =>
        ReplicaStore.Create(dir.File("store"), 512L << 20, new PoolSettings { DataBlockSize = PoolBlock }, options);

    /// <summary>Pool blocks an increment can make the pool allocate: those its data and zero extents touch.</summary>
    private static long TouchedPoolBlocks(ReplicaWorkload w, int backup) =>
        w.Extents(backup).SelectMany(e => Enumerable.Range(0, (int)((e.Offset + e.Length - 1) / PoolBlock - e.Offset / PoolBlock + 1)).Select(i => e.Offset / PoolBlock + i)).Distinct().LongCount();

    [Fact]
    public async Task FullAndIncrementsPublishPointsThatReadBackAsTheirImagesAndShareBlocks()
    {
        using var dir = Tool.TempDir();
        var w = new ReplicaWorkload(seed: 1);
        var clock = new ManualClock(new DateTimeOffset(2026, 11, 21, 10, 15, 0, TimeSpan.Zero));
        var options = new ReplicaStoreOptions { Time = clock };
        var ids = new List<string>();
        await using (var store = NewStore(dir, options))
        {
            ulong before = 0;
            for (int k = 0; k < 5; k++)
            {
                if (k == 3)
                    clock.Now = clock.Now.AddSeconds(-30); // the clock went back: ids still increase
                var point = await w.BackupAsync(store, k);
                ids.Add(point.Id);
                ulong used = store.PoolStatus().DataBlocksUsed;
                if (k > 0)
                    Assert.True(used - before <= (ulong)TouchedPoolBlocks(w, k),
                        $"increment {k} grew the pool by {used - before} blocks; its extents touch only {TouchedPoolBlocks(w, k)}");
                else
                    Assert.True(used < (ulong)(w.Size / PoolBlock), $"the full backup maps {used} blocks: zero extents should stay unmapped");
                before = used;
                Assert.Equal(k + 1, store.ListPoints(A, V).Count);
                Assert.Null(store.FindStaging(A, V));
            }
            Assert.Equal(new[] { "20261121T101500Z", "20261121T101500Z-2", "20261121T101500Z-3", "20261121T101500Z-4", "20261121T101500Z-5" }, ids);
            await PointsAreWhole(store, w, "open store");
            Assert.Equal(ids[^1], store.FindPoint(A, V, ReplicaStore.Latest)!.Id);
            Assert.Equal(ids[1], store.FindPoint(A, V, ids[1])!.Id);
            Assert.Null(store.FindPoint(A, V, "20991231T000000Z"));
            // Ten points in all: the tenth shares most blocks with the ninth.
            for (int k = 5; k < 10; k++)
                await w.BackupAsync(store, k);
            Assert.Equal("20261121T101500Z-10", store.FindPoint(A, V, ReplicaStore.Latest)!.Id);
        }
        ThinCheckPasses(Path.Combine(dir.File("store"), "pool"), "after close");
        await using (var reopened = ReplicaStore.Open(dir.File("store"), options))
        {
            await PointsAreWhole(reopened, w, "reopened");
            Assert.Equal(10, reopened.ListPoints(A, V).Count);
            Assert.Equal(new[] { (A, V) }, reopened.ListVolumes());
        }
    }

    [Fact]
    public async Task TheLatestPointsTableHoldsEveryBlocksHashAndOlderPointsKeepNone()
    {
        using var dir = Tool.TempDir();
        var w = new ReplicaWorkload(seed: 2, size: (4L << 20) + 1000); // a short last block
        await using var store = NewStore(dir);
        string pointsDir = Path.Combine(store.Directory, "points", A, V);
        for (int k = 0; k < 3; k++)
        {
            var p = await w.BackupAsync(store, k);
            Assert.Equal(TableOf(w, k), ReadTable(Path.Combine(pointsDir, p.Id + ".hashes"), w));
            Assert.Equal(new[] { p.Id + ".hashes" }, Directory.GetFiles(pointsDir, "*.hashes").Select(Path.GetFileName));
        }
        await PointsAreWhole(store, w, "short last block");
    }

    /// <summary>
    /// A base point without its table (the store keeps the latest point's only; here it is lost) gets
    /// it rebuilt from the point's bytes, so the next increment's digest still verifies.
    /// </summary>
    [Fact]
    public async Task AMissingOrOlderFormatBaseTableIsRebuiltFromThePointsBytes()
    {
        using var dir = Tool.TempDir();
        var w = new ReplicaWorkload(seed: 5, size: (4L << 20) + 1000);
        await using var store = NewStore(dir);
        string pointsDir = Path.Combine(store.Directory, "points", A, V);
        for (int k = 0; k < 3; k++)
        {
            var p = await w.BackupAsync(store, k);
            string table = Path.Combine(pointsDir, p.Id + ".hashes");
            if (k == 2)
            {
                Assert.Equal(TableOf(w, k), ReadTable(table, w));
                break;
            }
            if (k == 0)
            {
                File.Delete(table);
            }
            else
            {
                // A table as versions before protocol 2 wrote it: 32 bytes (SHA-256) per block.
                var old = new byte[BlockHashes.Count(w.Size, w.BlockSize) * 32];
                new Random(k).NextBytes(old);
                File.WriteAllBytes(table, old);
            }
            // The next staging rebuilds it before copying it; the increment then commits only if the
            // digest over the rebuilt entries matches the image.
            var staged = await w.StageAsync(store, k + 1);
            Assert.Equal(TableOf(w, k), ReadTable(table, w));
            await staged.DisposeAsync();
        }
        await PointsAreWhole(store, w, "rebuilt tables");
    }

    /// <summary>The hash of every block of backup <paramref name="k"/>'s image.</summary>
    private static byte[] TableOf(ReplicaWorkload w, int k)
    {
        var image = w.Image(k);
        var expected = new byte[BlockHashes.Count(image.Length, w.BlockSize) * WireProtocol.BlockHashSize];
        BlockHashes.Compute(image, w.BlockSize, expected);
        return expected;
    }

    private static byte[] ReadTable(string path, ReplicaWorkload w)
    {
        using var table = BlockHashTable.Open(path, w.Size, w.BlockSize);
        var actual = new byte[table.BlockCount * WireProtocol.BlockHashSize];
        table.Get(0, actual);
        return actual;
    }

    [Fact]
    public async Task ResumeAfterReopenContinuesFromTheDurableState()
    {
        using var dir = Tool.TempDir();
        var w = new ReplicaWorkload(seed: 3);
        StagingState durable;
        await using (var store = NewStore(dir))
        {
            await w.BackupAsync(store, 0);
            var staged = await w.StageAsync(store, 1);
            int frames = w.Frames(1);
            Assert.True(frames >= 4, $"increment 1 has only {frames} frames");
            await w.ApplyAsync(staged, 1, lastFrame: frames / 2);
            durable = staged.State;
            Assert.Equal((ulong)(frames / 2), durable.DurableSequence);
            // Written but never made durable: the store must not claim it.
            await w.ApplyAsync(staged, 1, lastFrame: frames - 1, makeDurable: false);
            Assert.Equal(durable, store.FindStaging(A, V));
        }
        await using (var store = ReplicaStore.Open(dir.File("store")))
        {
            Assert.Equal(durable, store.FindStaging(A, V));
            Assert.Single(store.ListPoints(A, V));
            await using var staged = await store.ResumeStagingAsync(A, V, CancellationToken.None);
            Assert.Equal(durable, staged.State);
            await w.ApplyAsync(staged, 1);
            var point = await staged.PublishAsync(staged.ComputeDigest(), CancellationToken.None);
            Assert.Equal(ReplicaWorkload.Target(1), point.SourceSnapshot);
            await PointsAreWhole(store, w, "after resume");
            Assert.Null(store.FindStaging(A, V));
            Assert.False(Directory.Exists(Path.Combine(store.Directory, "staging", A, V)));
        }
        ThinCheckPasses(Path.Combine(dir.File("store"), "pool"), "after resume");
    }

    [Fact]
    public async Task ReplayingDurableWritesChangesNothing()
    {
        using var dir = Tool.TempDir();
        var w = new ReplicaWorkload(seed: 4);
        await using var store = NewStore(dir);
        await w.BackupAsync(store, 0);
        await using var staged = await w.StageAsync(store, 1);
        await w.ApplyAsync(staged, 1);
        var digest = staged.ComputeDigest();
        var state = staged.State;
        ulong used = store.PoolStatus().DataBlocksUsed;
        // The whole stream again, as after a receiver restart that lost its acks.
        await w.ApplyAsync(new ReplayFromStart(staged), 1);
        Assert.Equal(used, store.PoolStatus().DataBlocksUsed);
        Assert.Equal(digest, staged.ComputeDigest());
        Assert.Equal(state, staged.State);
        Assert.Equal(w.Digest(w.Image(1)), digest);
        await staged.PublishAsync(digest, CancellationToken.None);
        await PointsAreWhole(store, w, "after replay");
    }

    /// <summary>A staged point that reports no durable progress, so a workload applies every frame again (MakeDurable at the same values is allowed).</summary>
    private sealed class ReplayFromStart(IStagedPoint inner) : IStagedPoint
    {
        public StagingState State => inner.State with { DurableSequence = 0, DurablePosition = 0, ChangedBytes = 0 };
        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, ReadOnlyMemory<byte> blockHashes, CancellationToken ct) => inner.WriteAsync(offset, data, blockHashes, ct);
        public ValueTask ZeroAsync(long offset, long length, bool discard, CancellationToken ct) => inner.ZeroAsync(offset, length, discard, ct);
        public ValueTask MakeDurableAsync(ulong sequence, long position, long changedBytes, CancellationToken ct) =>
            sequence < inner.State.DurableSequence ? ValueTask.CompletedTask : inner.MakeDurableAsync(sequence, position, changedBytes, ct);
        public byte[] ComputeDigest() => inner.ComputeDigest();
        public ValueTask<ReplicaPoint> PublishAsync(byte[] digest, CancellationToken ct) => inner.PublishAsync(digest, ct);
        public ValueTask AbandonAsync(CancellationToken ct) => inner.AbandonAsync(ct);
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    [Fact]
    public async Task RestoreWritesASparseImageFile()
    {
        using var dir = Tool.TempDir();
        var w = new ReplicaWorkload(seed: 5, size: 64L << 20, fullDataShare: 0.03); // mostly empty
        await using var store = NewStore(dir);
        var point = await w.BackupAsync(store, 0);
        string image = dir.File("restored.img");
        long reported = 0;
        await store.RestoreAsync(A, V, ReplicaStore.Latest, image, overwrite: false, new BackupAppliance.Core.CallbackProgress<long>(v => reported = Math.Max(reported, v)), CancellationToken.None);

        var expected = w.Image(0);
        Assert.Equal(expected.Length, new FileInfo(image).Length);
        Assert.Equal(-1, FirstDifference(expected, File.ReadAllBytes(image)));
        Assert.Equal(w.Size, reported);
        long allocated = long.Parse(Tool.Run("stat", "-c", "%b", image).Stdout.Trim()) * 512;
        long nonZero = Enumerable.Range(0, (int)(w.Size / 4096)).LongCount(i => expected.AsSpan(i * 4096, 4096).ContainsAnyExcept((byte)0)) * 4096;
        Assert.True(allocated <= nonZero + (1 << 20), $"restored image allocates {allocated} bytes; only {nonZero} are non-zero (image {w.Size})");
        Assert.True(allocated < w.Size / 10, $"restored image allocates {allocated} of {w.Size} bytes");
        Assert.False(File.Exists(image + ".partial"));

        // An existing file is refused and kept, unless overwriting is asked for.
        File.WriteAllText(image, "keep me");
        var refused = await Assert.ThrowsAsync<IOException>(() => store.RestoreAsync(A, V, point.Id, image, false, null, CancellationToken.None).AsTask());
        Assert.Contains("already exists", refused.Message);
        Assert.Equal("keep me", File.ReadAllText(image));
        await store.RestoreAsync(A, V, point.Id, image, overwrite: true, null, CancellationToken.None);
        Assert.Equal(-1, FirstDifference(expected, File.ReadAllBytes(image)));

        var unknown = await Assert.ThrowsAsync<ReplicaStoreException>(() => store.RestoreAsync(A, V, "20200101T000000Z", dir.File("x.img"), false, null, CancellationToken.None).AsTask());
        Assert.Equal(ReplicaStoreError.UnknownPoint, unknown.Error);
        Assert.False(File.Exists(dir.File("x.img")));
    }

    [Fact]
    public async Task AbandonDropsTheStagingAndItsBlocks()
    {
        using var dir = Tool.TempDir();
        var w = new ReplicaWorkload(seed: 6);
        await using var store = NewStore(dir);
        await w.BackupAsync(store, 0);
        ulong used = store.PoolStatus().DataBlocksUsed;
        var staged = await w.StageAsync(store, 1);
        await w.ApplyAsync(staged, 1);
        Assert.True(store.PoolStatus().DataBlocksUsed > used);
        await staged.AbandonAsync(CancellationToken.None);
        Assert.Null(store.FindStaging(A, V));
        Assert.Equal(used, store.PoolStatus().DataBlocksUsed);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => staged.WriteAsync(0, new byte[4096], new byte[32], CancellationToken.None).AsTask());
        Assert.Single(store.ListPoints(A, V));
        // A new begin after it works, and a begin drops an unfinished staging first.
        var again = await w.StageAsync(store, 1);
        await w.ApplyAsync(again, 1, lastFrame: 1);
        await using var third = await w.StageAsync(store, 1); // resumes (same target)
        Assert.Equal(1UL, third.State.DurableSequence);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => again.MakeDurableAsync(5, 0, 0, CancellationToken.None).AsTask());
        await using var fresh = await store.BeginStagingAsync(third.State.Request, CancellationToken.None);
        Assert.Equal(0UL, fresh.State.DurableSequence);
        await w.ApplyAsync(fresh, 1);
        await fresh.PublishAsync(fresh.ComputeDigest(), CancellationToken.None);
        await PointsAreWhole(store, w, "after abandon and restart");
    }

    [Fact]
    public async Task BadRequestsAreRefusedByNameAndChangeNothing()
    {
        using var dir = Tool.TempDir();
        var w = new ReplicaWorkload(seed: 7, size: 1L << 20);
        var options = new ReplicaStoreOptions { Keep = [new KeptVolume(A, V), new KeptVolume("other")] };
        await using var store = NewStore(dir, options);
        var p0 = await w.BackupAsync(store, 0);
        Assert.True(store.Keeps(A, V));
        Assert.True(store.Keeps("other", "anything"));
        Assert.False(store.Keeps(A, "vol_b"));
        Assert.False(store.Keeps("a.b", V));

        async Task<ReplicaStoreException> Refused(StagingRequest r, ReplicaStoreError error, string text)
        {
            var e = await Assert.ThrowsAsync<ReplicaStoreException>(() => store.BeginStagingAsync(r, CancellationToken.None).AsTask());
            Assert.Equal(error, e.Error);
            Assert.Contains(text, e.Message);
            return e;
        }
        var ok = new StagingRequest(A, V, 9, p0.Id, "img-1", w.Size, w.BlockSize);
        await Refused(ok with { Volume = "vol_b" }, ReplicaStoreError.UnknownVolume, "does not keep");
        await Refused(ok with { BasePoint = "20200101T000000Z" }, ReplicaStoreError.BaseMismatch, "no point '20200101T000000Z'");
        await Refused(ok with { Size = w.Size * 2 }, ReplicaStoreError.BaseMismatch, "a size change needs a full backup");
        await Refused(ok with { BlockSize = 8192 }, ReplicaStoreError.BaseMismatch, "8192-byte blocks");
        await Refused(ok with { BlockSize = 3000 }, ReplicaStoreError.InvalidRequest, "block size 3000");
        await Refused(ok with { Stream = 0 }, ReplicaStoreError.InvalidRequest, "stream id 0");
        var badName = await Assert.ThrowsAsync<ReplicaStoreException>(() => store.ResumeStagingAsync(A, "../x", CancellationToken.None).AsTask());
        Assert.Contains("'../x' is not a valid name", badName.Message);
        var none = await Assert.ThrowsAsync<ReplicaStoreException>(() => store.ResumeStagingAsync(A, V, CancellationToken.None).AsTask());
        Assert.Equal(ReplicaStoreError.NoStaging, none.Error);
        Assert.Null(store.FindStaging(A, V));
        Assert.Equal(1, store.PoolStatus().Volumes); // the one point's volume, nothing staged

        await using var staged = await store.BeginStagingAsync(ok, CancellationToken.None);
        var hash = new byte[WireProtocol.BlockHashSize];
        async Task Invalid(Func<Task> act, string text)
        {
            var e = await Assert.ThrowsAsync<ReplicaStoreException>(act);
            Assert.Equal(ReplicaStoreError.InvalidRequest, e.Error);
            Assert.Contains(text, e.Message);
        }
        await Invalid(() => staged.WriteAsync(100, new byte[4096], hash, default).AsTask(), "not aligned");
        await Invalid(() => staged.WriteAsync(w.Size, new byte[4096], hash, default).AsTask(), "outside the image");
        await Invalid(() => staged.WriteAsync(0, new byte[8192], hash, default).AsTask(), $"need {2 * WireProtocol.BlockHashSize} bytes of hashes");
        await Invalid(() => staged.WriteAsync([new StagedWrite(0, 4096, hash), new StagedWrite(8192, 4096, hash)], new byte[4096], default).AsTask(), "2 extents cover 8192 bytes, but 4096 bytes of data");
        await Invalid(() => staged.WriteAsync([new StagedWrite(0, 4096, hash), new StagedWrite(8192, 8192, hash)], new byte[12288], default).AsTask(), $"need {2 * WireProtocol.BlockHashSize} bytes of hashes");
        await Invalid(() => staged.WriteAsync([new StagedWrite(0, 4096, hash), new StagedWrite(w.Size, 4096, hash)], new byte[8192], default).AsTask(), "outside the image");
        await Invalid(() => staged.ZeroAsync(4096, 100, true, default).AsTask(), "not aligned");
        await staged.MakeDurableAsync(3, 8192, 10, default);
        await Invalid(() => staged.MakeDurableAsync(2, 8192, 10, default).AsTask(), "cannot go back");
        await Invalid(() => staged.MakeDurableAsync(4, w.Size + 1, 10, default).AsTask(), "beyond the image");
        await Invalid(() => staged.PublishAsync(new byte[32], default).AsTask(), "nothing was published");
        await Invalid(() => staged.PublishAsync(new byte[31], default).AsTask(), "32 bytes");
        Assert.Equal(3UL, store.FindStaging(A, V)!.DurableSequence);
        Assert.Single(store.ListPoints(A, V));
        // Nothing was written: the staging still reads as its base.
        Assert.Equal(w.Digest(w.Image(0)), staged.ComputeDigest());
    }

    [Fact]
    public async Task OpenFinishesAnInterruptedPublishOneWayOrTheOther()
    {
        using var dir = Tool.TempDir();
        string root = dir.File("store");
        var w = new ReplicaWorkload(seed: 8, size: 2L << 20);
        string stagingDir = Path.Combine(root, "staging", A, V);
        string pointsDir = Path.Combine(root, "points", A, V);
        StagingState durable;
        string savedProgress;
        await using (var store = NewStore(dir))
        {
            await w.BackupAsync(store, 0);
            var staged = await w.StageAsync(store, 1);
            await w.ApplyAsync(staged, 1);
            durable = staged.State;
            await staged.DisposeAsync();
        }
        // A crash after the point's record and table were written, before the catalogue rename.
        string orphan = "20991231T235959Z";
        File.Copy(Path.Combine(pointsDir, Directory.GetFiles(pointsDir, "*.json").Single()), Path.Combine(pointsDir, orphan + ".json"));
        File.Copy(Path.Combine(stagingDir, "hashes"), Path.Combine(pointsDir, orphan + ".hashes"));
        File.WriteAllText(Path.Combine(pointsDir, "x.json.tmp"), "half");
        await using (var store = ReplicaStore.Open(root))
        {
            Assert.Single(store.ListPoints(A, V));
            Assert.Equal(durable, store.FindStaging(A, V));
            Assert.False(File.Exists(Path.Combine(pointsDir, orphan + ".json")));
            Assert.False(File.Exists(Path.Combine(pointsDir, orphan + ".hashes")));
            Assert.False(File.Exists(Path.Combine(pointsDir, "x.json.tmp")));
            savedProgress = File.ReadAllText(Path.Combine(stagingDir, "progress.json"));
            await using var staged = await store.ResumeStagingAsync(A, V, default);
            await staged.PublishAsync(staged.ComputeDigest(), default);
        }
        // A crash after the rename, before the staging's files and the older point's table were removed.
        string latestTable = Directory.GetFiles(pointsDir, "*.hashes").Single();
        string olderRecord = Directory.GetFiles(pointsDir, "*.json").Single(f => f[..^5] + ".hashes" != latestTable);
        File.Copy(latestTable, olderRecord[..^5] + ".hashes");
        Directory.CreateDirectory(stagingDir);
        File.WriteAllText(Path.Combine(stagingDir, "progress.json"), savedProgress);
        File.Copy(Path.Combine(pointsDir, Directory.GetFiles(pointsDir, "*.hashes").Max()!), Path.Combine(stagingDir, "hashes"));
        await using (var store = ReplicaStore.Open(root))
        {
            Assert.Null(store.FindStaging(A, V));
            Assert.False(Directory.Exists(stagingDir));
            Assert.Single(Directory.GetFiles(pointsDir, "*.hashes"));
            await PointsAreWhole(store, w, "after a finished publish");
            Assert.Equal(2, store.ListPoints(A, V).Count);
        }
        ThinCheckPasses(Path.Combine(root, "pool"), "after recovery");
    }

    /// <summary>
    /// A crash while a staging was begun, after its volume was made but before its hash table was
    /// complete (found by the kill -9 campaign): open drops the unusable staging, volume and all,
    /// keeps the points, and a new staging can begin.
    /// </summary>
    [Fact]
    public async Task OpenDropsAStagingWhoseTableIsMissing()
    {
        using var dir = Tool.TempDir();
        string root = dir.File("store");
        var w = new ReplicaWorkload(seed: 9, size: 2L << 20);
        string stagingDir = Path.Combine(root, "staging", A, V);
        await using (var store = NewStore(dir))
        {
            await w.BackupAsync(store, 0);
            var staged = await w.StageAsync(store, 1);
            await w.ApplyAsync(staged, 1);
            await staged.DisposeAsync();
        }
        File.Delete(Path.Combine(stagingDir, "hashes"));
        await using (var store = ReplicaStore.Open(root))
        {
            Assert.Null(store.FindStaging(A, V));
            Assert.Equal(1, store.PoolStatus().Volumes); // the point; the staging volume is gone
            await PointsAreWhole(store, w, "after dropping the staging");
            Assert.Single(store.ListPoints(A, V));
            await w.BackupAsync(store, 1);
            Assert.Equal(2, store.ListPoints(A, V).Count);
        }
        ThinCheckPasses(Path.Combine(root, "pool"), "after recovery");
    }
}
