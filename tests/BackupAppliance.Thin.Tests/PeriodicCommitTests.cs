using BackupAppliance.Thin.Pool;
using BackupAppliance.Thin.Tests.Support;
using static BackupAppliance.Thin.Tests.Support.VolumeBytes;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// The periodic commit flushes the data outside the pool's lock, then commits under it, flushing
/// the data again only if blocks were mapped in between. Data written in place in between is then
/// not flushed by that commit; a FLUSH afterwards, or closing the pool, still has to flush it.
/// The page cache (cachestat) says whether the data file has pages nothing flushed.
/// </summary>
public class PeriodicCommitTests
{
    private const int Bs = 65536;

    [Theory]
    [InlineData("flush")]
    [InlineData("close")]
    public async Task WritesInPlaceDuringThePeriodicCommitAreFlushedByTheNextFlushOrClose(string then)
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool"), data = Path.Combine(path, ThinPool.DataFile);
        var first = Bytes(4 * Bs, 1);
        var overwrite = Bytes(Bs + 1000, 2);
        // No commit loop: the test runs the periodic commit's two halves itself.
        var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings(), commitInterval: TimeSpan.Zero);
        try
        {
            var v = pool.CreateVolume("v", 16L * Bs);
            await v.WriteAsync(0, first, false, default);
            await v.FlushAsync(default);
            Assert.Equal(0UL, PageCache.UnflushedPages(data));

            Assert.True(pool.FlushDataAhead());
            // Blocks 1 and 2 are mapped and not shared: written in place, after that flush began.
            await v.WriteAsync(Bs + 500, overwrite, false, default);
            await pool.CommitAfterFlushAheadAsync(flushed: true, default);

            if (then == "flush")
            {
                await v.FlushAsync(default);
                Assert.Equal(0UL, PageCache.UnflushedPages(data));
            }
        }
        finally
        {
            await pool.DisposeAsync();
        }
        Assert.Equal(0UL, PageCache.UnflushedPages(data));

        overwrite.CopyTo(first, Bs + 500);
        await using var reopened = ThinPool.Open(path);
        Assert.Equal(first, await Read(reopened.OpenVolume("v"), 0, first.Length));
    }

    [Fact]
    public async Task BlocksMappedDuringThePeriodicCommitAreFlushedByIt()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool"), data = Path.Combine(path, ThinPool.DataFile);
        var old = Bytes(2 * Bs, 3);
        var fresh = Bytes(3 * Bs + 100, 4);
        await using var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings(), commitInterval: TimeSpan.Zero);
        var v = pool.CreateVolume("v", 16L * Bs);
        await v.WriteAsync(0, old, false, default);
        pool.Snapshot("v", "s"); // commits, flushing the data
        Assert.Equal(0UL, PageCache.UnflushedPages(data));

        Assert.True(pool.FlushDataAhead());
        // After that flush began: block 1 breaks sharing with s, blocks 2 and 3 are first writes.
        await v.WriteAsync(Bs, fresh, false, default);
        await pool.CommitAfterFlushAheadAsync(flushed: true, default);
        // The commit records the new mappings, so it flushed their data under the lock first.
        Assert.Equal(0UL, PageCache.UnflushedPages(data));
    }
}
