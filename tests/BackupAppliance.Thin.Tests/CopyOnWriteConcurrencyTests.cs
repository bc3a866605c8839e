using BackupAppliance.Core;
using BackupAppliance.Thin.Check;
using BackupAppliance.Thin.Pool;
using BackupAppliance.Thin.Tests.Support;
using static BackupAppliance.Thin.Tests.Support.VolumeBytes;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// Writes that fill new blocks (breaking sharing, or a first write) copy with the pool's lock
/// released: concurrent writes into the same blocks, commits while copies run, and the data file
/// they leave behind.
/// </summary>
public class CopyOnWriteConcurrencyTests
{
    private const int Bs = 65536;

    [Fact]
    public async Task ConcurrentWritesIntoTheSameSharedBlocksKeepEveryByte()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        const int shared = 128, fresh = 32, slices = 8, slice = Bs / slices;
        var old = Bytes(shared * Bs, 1);
        var model = new byte[(shared + fresh) * Bs];
        old.CopyTo(model, 0);
        await using (var pool = ThinPool.Create(path, 512L * Bs, new PoolSettings()))
        {
            var v = pool.CreateVolume("v", (shared + fresh) * Bs);
            await v.WriteAsync(0, old, false, default);
            pool.Snapshot("v", "s");

            // Blocks 0-63: eight writes at once into each block, each its own slice (unaligned at
            // both ends): the first to run breaks the sharing with its copy, the other seven find
            // the block held and wait for that copy. Blocks 128-159 (never written): the same,
            // with zero fill. Blocks 64-127: whole blocks, four per write, two writes at once.
            var writes = new List<(long Offset, byte[] Data)>();
            foreach (int block in Enumerable.Range(0, 64).Concat(Enumerable.Range(shared, fresh)))
            {
                var wave = Enumerable.Range(0, slices).Select(w => ((long)block * Bs + w * slice + 3, Bytes(slice - 6, block * slices + w))).ToList();
                writes.AddRange(wave);
                await Task.WhenAll(wave.Select(x => v.WriteAsync(x.Item1, x.Item2, false, default).AsTask()));
            }
            for (int k = 0; k < 8; k++)
            {
                var wave = Enumerable.Range(0, 2).Select(w => ((long)(64 + (2 * k + w) * 4) * Bs, Bytes(4 * Bs, 1000 + 2 * k + w))).ToList();
                writes.AddRange(wave);
                await Task.WhenAll(wave.Select(x => v.WriteAsync(x.Item1, x.Item2, false, default).AsTask()));
            }
            foreach (var (offset, data) in writes)
                data.CopyTo(model, offset);

            Assert.Equal(model, await Read(v, 0, model.Length));
            Assert.Equal(old, await Read(pool.OpenVolume("s"), 0, old.Length));
            // 128 shared, 128 copies, 32 fresh: a block allocated twice for one virtual block shows here.
            Assert.Equal((ulong)(2 * shared + fresh), pool.Status().DataBlocksUsed);
        }
        MetadataIsValid(path, "after concurrent copies");
    }

    /// <summary>
    /// A write given a task to land after (a change tracker's mark commit): its new blocks are
    /// allocated and filled meanwhile, but neither they nor an overwrite in place can be read before
    /// the task completes; if the task fails, the write fails with its exception, changes nothing
    /// and gives its new block back.
    /// </summary>
    [Fact]
    public async Task WritesLandOnlyAfterTheTaskTheyAreGiven()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        var old = Bytes(4 * Bs, 7);
        await using (var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings()))
        {
            var v = pool.CreateVolume("v", 4L * Bs);
            await v.WriteAsync(0, old, false, default);
            pool.Snapshot("v", "s");
            var expected = (byte[])old.Clone();
            var unshared = Bytes(Bs, 8);
            await v.WriteAsync(3L * Bs, unshared, false, default); // block 3: its own now, overwritten in place below
            unshared.CopyTo(expected, 3 * Bs);
            ulong used = pool.Status().DataBlocksUsed;

            // Block 1 breaks sharing; block 3 in place; one write across blocks 2 (shared) and 3.
            var land = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var writes = new (long Offset, byte[] Data)[] { (Bs + 100, Bytes(4096, 9)), (3L * Bs + 200, Bytes(4096, 10)), (3L * Bs - 300, Bytes(400, 11)) };
            var pending = writes.Select(w => v.WriteAfterAsync(w.Offset, w.Data, false, land.Task, default).AsTask()).ToList();
            Assert.All(pending, t => Assert.False(t.IsCompleted, "a write completed before the task it lands after"));
            Assert.Equal(expected, await Read(v, 0, expected.Length));
            land.SetResult();
            await Task.WhenAll(pending);
            foreach (var (offset, data) in writes)
                data.CopyTo(expected, offset);
            Assert.Equal(expected, await Read(v, 0, expected.Length));
            Assert.Equal(old, await Read(pool.OpenVolume("s"), 0, old.Length));
            Assert.Equal(used + 2, pool.Status().DataBlocksUsed);

            // The task fails: a write breaking sharing (block 0) and one in place (block 3) fail with its exception.
            var fail = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var doomed = new[] { (50L, Bytes(4096, 12)), (3L * Bs + 8000, Bytes(4096, 13)) }
                .Select(w => v.WriteAfterAsync(w.Item1, w.Item2, false, fail.Task, default).AsTask()).ToList();
            fail.SetException(new VolumeException(VolumeError.IoError, "the mark could not be committed"));
            foreach (var t in doomed)
                Assert.Contains("the mark could not be committed", (await Assert.ThrowsAsync<VolumeException>(() => t)).Message);
            Assert.Equal(expected, await Read(v, 0, expected.Length));
            Assert.Equal(used + 2, pool.Status().DataBlocksUsed);
            await v.FlushAsync(default);
        }
        MetadataIsValid(path, "after writes that landed after a task");
    }

    [Fact]
    public async Task CommitsWhileCopiesRunRecordOnlyMappedBlocks()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        const int blocks = 256;
        // No periodic commit: the flushes below are the only commits, so the metadata file is
        // still between two of them when it is copied.
        await using var pool = ThinPool.Create(path, 1024L * Bs, new PoolSettings(), commitInterval: TimeSpan.Zero);
        var v = pool.CreateVolume("v", blocks * Bs);
        await v.WriteAsync(0, Bytes(blocks * Bs, 2), false, default);
        pool.Snapshot("v", "s");

        // Waves of eight writes that break sharing (4 KiB into a block, or two whole blocks),
        // each followed at once by a flush: the writes' copies are running when it commits.
        var copies = new List<string>();
        for (int wave = 0; wave < blocks / 8; wave += 2)
        {
            var writes = Enumerable.Range(0, 8).Select(w =>
            {
                int b = wave * 8 + w * 2;
                return w % 2 == 0
                    ? v.WriteAsync((long)b * Bs + 4096 * (b % 16), Bytes(4096, b), false, default).AsTask()
                    : v.WriteAsync((long)b * Bs, Bytes(2 * Bs, b + 5000), false, default).AsTask();
            }).ToArray();
            await v.FlushAsync(default);
            string copy = dir.File($"metadata.{copies.Count}");
            File.Copy(Path.Combine(path, ThinPool.MetadataFile), copy);
            copies.Add(copy);
            await Task.WhenAll(writes);
        }

        // Every commit is whole: each allocated data block is mapped, none leaked, none missing.
        foreach (string copy in copies)
        {
            var report = ThinChecker.Check(copy, metadataSnap: false);
            Assert.True(report.IsValid, $"{Path.GetFileName(copy)} of {copies.Count}:\n" + string.Join("\n", report.Problems.Take(5).Select(p => p.Message)));
        }
    }

    [Fact]
    public async Task MetadataSnapshotsReservedWhileCopiesRunHoldOnlyFilledBlocks()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        const int blocks = 64;
        var old = Bytes(blocks * Bs, 4);
        var model = (byte[])old.Clone();
        var held = new List<List<(ulong VirtualBlock, ulong DataBlock)>>();
        await using (var pool = ThinPool.Create(path, 512L * Bs, new PoolSettings(), commitInterval: TimeSpan.Zero))
        {
            var v = pool.CreateVolume("v", blocks * Bs);
            await v.WriteAsync(0, old, false, default);
            pool.Snapshot("v", "s");

            // Waves of eight whole-block writes that break sharing, each followed at once by a
            // reservation (which commits): the writes' copies are running when it does.
            for (int wave = 0; wave < blocks; wave += 8)
            {
                var writes = Enumerable.Range(wave, 8).Select(b =>
                {
                    var bytes = Bytes(Bs, 100 + b);
                    bytes.CopyTo(model, (long)b * Bs);
                    return v.WriteAsync((long)b * Bs, bytes, false, default).AsTask();
                }).ToArray();
                using (var snapshot = pool.ReserveMetadataSnapshot())
                    held.Add(snapshot.Mappings("v"));
                await Task.WhenAll(writes);
            }
            Assert.Equal(model, await Read(v, 0, model.Length));
        }

        // Every mapping a snapshot held points at the old bytes (still shared) or at a copy that
        // was whole when it was committed; the data file is final now (each block was written once).
        using var data = File.OpenHandle(Path.Combine(path, ThinPool.DataFile), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var block = new byte[Bs];
        foreach (var (mappings, wave) in held.Select((m, i) => (m, i)))
        {
            Assert.Equal(blocks, mappings.Count);
            foreach (var (vb, db) in mappings)
            {
                RandomAccess.Read(data, block, (long)db * Bs);
                bool isOld = block.AsSpan().SequenceEqual(old.AsSpan((int)vb * Bs, Bs));
                bool isNew = block.AsSpan().SequenceEqual(model.AsSpan((int)vb * Bs, Bs));
                Assert.True(isOld || isNew, $"snapshot {wave}: virtual block {vb} maps data block {db}, which holds neither the old bytes nor the write's");
            }
        }
    }

    /// <summary>
    /// One write over eight whole blocks of which two are already mapped (written in place): the
    /// six others get new data blocks one after another, in two runs of virtual blocks, so that
    /// consecutive data blocks do not hold consecutive virtual blocks. Each must get its own bytes
    /// (first writes, copies breaking sharing, and both past the page cache).
    /// </summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public async Task NewBlocksAroundBlocksWrittenInPlaceGetTheirOwnBytes(bool breakSharing, bool streaming)
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        const int blocks = 8;
        var buffers = new AlignedBufferPool(blocks * Bs, keep: 1);
        await using (var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings()))
        {
            var v = pool.CreateVolume("v", blocks * Bs);
            if (breakSharing)
            {
                await v.WriteAsync(0, Bytes(blocks * Bs, 1), false, default);
                pool.Snapshot("v", "s");
            }
            // Blocks 2 and 5 mapped and not shared: the write below overwrites them in place.
            await v.WriteAsync(2L * Bs, Bytes(Bs, 2), false, default);
            await v.WriteAsync(5L * Bs, Bytes(Bs, 5), false, default);

            using var buffer = buffers.Rent();
            var expected = Bytes(blocks * Bs, 9);
            expected.CopyTo(buffer.Span);
            if (streaming)
                await v.WriteStreamingAsync(0, buffer.Memory, default);
            else
                await v.WriteAsync(0, buffer.Memory, false, default);

            var actual = await Read(v, 0, expected.Length);
            var wrong = Enumerable.Range(0, blocks).Where(b => !actual.AsSpan(b * Bs, Bs).SequenceEqual(expected.AsSpan(b * Bs, Bs)));
            Assert.True(!wrong.Any(), $"blocks {string.Join(",", wrong)} do not hold the bytes written to them");
            await v.FlushAsync(default);
        }
        await using var reopened = ThinPool.Open(path);
        Assert.Equal(Bytes(blocks * Bs, 9), await Read(reopened.OpenVolume("v"), 0, blocks * Bs));
    }

    [Fact]
    public async Task PreallocationAheadOfAllocationStaysBoundedAndIsPunchedOnceFree()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool"), data = Path.Combine(path, ThinPool.DataFile);
        long Allocated() => long.Parse(Tool.Run("du", "-B1", data).Stdout.Split('\t')[0]);
        var bytes = Bytes(16 * Bs, 3);
        await using (var pool = ThinPool.Create(path, 4096L * Bs, new PoolSettings()))
        {
            var v = pool.CreateVolume("v", 256L * Bs);
            await v.WriteAsync(0, bytes, true, default);
            // 16 blocks written; the window ahead of them is bounded (32 MiB), far from the 256 MiB file.
            long open = Allocated();
            Assert.InRange(open, 16L * Bs, 16L * Bs + (32L << 20));
        }
        Assert.Equal(16L * Bs, Allocated()); // closing punched the window's free blocks
        await using (var pool = ThinPool.Open(path))
        {
            Assert.Equal(bytes, await Read(pool.OpenVolume("v"), 0, bytes.Length));
            pool.DeleteVolume("v");
        }
        Assert.Equal(0L, Allocated());
    }

    /// <summary>The pool's closed metadata passes our checker (data reference counts included) and thin_check.</summary>
    private static void MetadataIsValid(string pool, string context)
    {
        string metadata = Path.Combine(pool, ThinPool.MetadataFile);
        var report = ThinChecker.Check(metadata, metadataSnap: false);
        Assert.True(report.IsValid, $"{context}: " + string.Join("\n", report.Problems.Select(p => p.Message)));
        Oracle.AssertCheckPasses(metadata, context);
    }
}
