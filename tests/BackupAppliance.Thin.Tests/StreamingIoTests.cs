using BackupAppliance.Core;
using BackupAppliance.Thin.Pool;
using BackupAppliance.Thin.Tests.Support;
using static BackupAppliance.Thin.Tests.Support.VolumeBytes;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// Streaming reads and writes (a backup reading its snapshot, a replica being filled) return and
/// store the same bytes as ordinary ones, and where aligned they go past the page cache: the data
/// file's pages in the cache (cachestat) do not grow.
/// </summary>
public class StreamingIoTests
{
    private const int Bs = 65536;

    [Fact]
    public async Task StreamingReadsOfASnapshotReturnItsBytesWithoutFillingThePageCache()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool"), data = Path.Combine(path, ThinPool.DataFile);
        var before = Bytes(12 * Bs, 1);
        await using var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings());
        var v = pool.CreateVolume("v", 16L * Bs);
        await v.WriteAsync(0, before, false, default);
        await v.DiscardAsync(4L * Bs, 2L * Bs, false, default); // a hole inside the snapshot
        before.AsSpan(4 * Bs, 2 * Bs).Clear();
        var snapshot = pool.Snapshot("v", "snap");
        await v.WriteAsync(Bs, Bytes(3 * Bs, 2), false, default); // breaks sharing: the snapshot keeps the old bytes
        await v.FlushAsync(default);
        var expected = new byte[16 * Bs];
        before.CopyTo(expected, 0);

        PageCache.Evict(data);
        ulong cachedBefore = PageCache.CachedPages(data);
        var buffers = new AlignedBufferPool(16 * Bs, keep: 1);
        using (var buffer = buffers.Rent())
        {
            await snapshot.ReadStreamingAsync(0, buffer.Memory, default);
            Assert.True(expected.AsSpan().SequenceEqual(buffer.Span), "streaming read of the whole snapshot");
        }
        Assert.Equal(cachedBefore, PageCache.CachedPages(data));

        // Unaligned: the same bytes, through the page cache.
        var odd = new byte[3 * Bs + 100];
        await snapshot.ReadStreamingAsync(Bs - 50, odd, default);
        Assert.True(expected.AsSpan(Bs - 50, odd.Length).SequenceEqual(odd), "unaligned streaming read");
        Assert.True(PageCache.CachedPages(data) > cachedBefore, "an unaligned read goes through the page cache");
    }

    /// <summary>
    /// A write into part of a shared block copies the rest of the old block: from the page cache
    /// when the old block is cached there, past it (direct I/O) when none of it is, so an uncached
    /// copy takes no page-cache memory. Either way the new block holds the old bytes around the
    /// write's, and the snapshot keeps the old block unchanged.
    /// </summary>
    [Fact]
    public async Task PartialWritesBreakingSharingReadUncachedOldBlocksPastThePageCache()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool"), data = Path.Combine(path, ThinPool.DataFile);
        const int blocks = 8;
        var old = Bytes(blocks * Bs, 6);
        var expected = (byte[])old.Clone();
        await using (var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings()))
        {
            var v = pool.CreateVolume("v", blocks * Bs);
            await v.WriteAsync(0, old, false, default);
            var snapshot = pool.Snapshot("v", "snap");
            await v.FlushAsync(default);
            PageCache.Evict(data);
            // Blocks 4-7 cached again (an ordinary read), blocks 0-3 not.
            await Read(snapshot, 4L * Bs, 4 * Bs);
            ulong cachedBefore = PageCache.CachedPages(data);
            Assert.True(cachedBefore >= 4 * Bs / 4096, $"blocks 4-7 cached ({cachedBefore} pages)");

            for (int b = 0; b < blocks; b++)
            {
                // 4 KiB at a different place in each block, at its start, its end or inside it.
                int at = b % 3 == 0 ? 0 : b % 3 == 1 ? Bs - 4096 : 4096 * b + 100;
                var piece = Bytes(4096, 100 + b);
                await v.WriteAsync((long)b * Bs + at, piece, false, default);
                piece.CopyTo(expected, b * Bs + at);
            }
            await v.FlushAsync(default);
            Assert.Equal(cachedBefore, PageCache.CachedPages(data));

            Assert.Equal(expected, await Read(v, 0, expected.Length));
            Assert.Equal(old, await Read(snapshot, 0, old.Length));
            Assert.Equal((ulong)(2 * blocks), pool.Status().DataBlocksUsed);
        }
        Oracle.AssertCheckPasses(Path.Combine(path, ThinPool.MetadataFile), "after copies read past the page cache");
        await using (var pool = ThinPool.Open(path))
        {
            Assert.Equal(expected, await Read(pool.OpenVolume("v"), 0, expected.Length));
            Assert.Equal(old, await Read(pool.OpenVolume("snap"), 0, old.Length));
        }
    }

    [Fact]
    public async Task StreamingWritesOfWholeNewBlocksGoPastThePageCacheAndSurviveReopening()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool"), data = Path.Combine(path, ThinPool.DataFile);
        var expected = new byte[16 * Bs];
        var buffers = new AlignedBufferPool(4 * Bs, keep: 1);
        await using (var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings()))
        {
            var v = pool.CreateVolume("v", 16L * Bs);
            await v.WriteAsync(8L * Bs, Bytes(2 * Bs, 3), false, default);
            Bytes(2 * Bs, 3).CopyTo(expected, 8 * Bs);
            var snapshot = pool.Snapshot("v", "snap");
            await v.FlushAsync(default);
            PageCache.Evict(data);
            ulong cachedBefore = PageCache.CachedPages(data);

            using (var buffer = buffers.Rent())
            {
                // New blocks (unmapped), then blocks shared with the snapshot, each covered whole.
                Bytes(4 * Bs, 4).CopyTo(buffer.Span);
                await v.WriteStreamingAsync(0, buffer.Memory, default);
                buffer.Span.CopyTo(expected.AsSpan(0, 4 * Bs));
                Bytes(4 * Bs, 5).CopyTo(buffer.Span);
                await v.WriteStreamingAsync(7L * Bs, buffer.Memory, default);
                buffer.Span.CopyTo(expected.AsSpan(7 * Bs, 4 * Bs));
            }
            Assert.Equal(cachedBefore, PageCache.CachedPages(data));

            // A block covered in part: the same result, through the page cache.
            var part = Bytes(Bs / 2, 6);
            await v.WriteStreamingAsync(13L * Bs + 1000, part, default);
            part.CopyTo(expected, 13 * Bs + 1000);

            Assert.Equal(expected, await Read(v, 0, expected.Length));
            var oldBytes = new byte[16 * Bs];
            Bytes(2 * Bs, 3).CopyTo(oldBytes, 8 * Bs);
            Assert.Equal(oldBytes, await Read(snapshot, 0, oldBytes.Length));
        }
        var check = Tool.Run("thin_check", Path.Combine(path, ThinPool.MetadataFile));
        Assert.True(check.ExitCode == 0, $"thin_check: {check.Stderr}");
        await using var reopened = ThinPool.Open(path);
        Assert.Equal(expected, await Read(reopened.OpenVolume("v"), 0, expected.Length));
    }
}
