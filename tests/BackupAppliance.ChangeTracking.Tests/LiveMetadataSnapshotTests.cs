using BackupAppliance.TestSupport;
using BackupAppliance.Thin;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.ChangeTracking.Tests;

/// <summary>
/// reserve → read → release of a metadata snapshot on a pool that keeps writing and committing: the
/// walk takes no pool lock, and what it reads (a thin snapshot's mappings, and the data they point
/// at in the data file) is exactly the image at the moment it was taken.
/// </summary>
public sealed class LiveMetadataSnapshotTests
{
    private const int BlockSize = 64 * 1024;

    [Theory]
    [InlineData(11)]
    [InlineData(12)]
    public async Task SnapshotTakenMidWorkloadReadsTheImageOfThatMomentWhileWritesGoOn(int seed)
    {
        using var dir = Tool.TempDir();
        string poolDir = dir.File("pool");
        var pool = TrackedPool.Create(poolDir, 256L << 20, new PoolSettings { DataBlockSize = BlockSize }, commitInterval: TimeSpan.FromMilliseconds(20));
        byte[] expected;
        long size = 1000L * BlockSize;
        var work = new Workload(pool.CreateVolume("v", size), seed);
        await work.RunAsync(700, contentChangingOnly: false);

        await pool.SnapshotAsync("v", "S", CancellationToken.None);
        expected = (byte[])work.Model.Clone();
        var held = pool.Pool.ReserveMetadataSnapshot();
        Assert.Equal(held.Block, pool.Pool.HeldMetadataSnapshot);

        // Writes go on (overwriting blocks S shares, so they copy) while the snapshot is walked.
        int done = 0;
        using var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await work.RunAsync(1, contentChangingOnly: false);
                Interlocked.Increment(ref done);
            }
        });

        var image = new byte[size];
        ulong root = held.Reader.MappingRoot(held.Volume("S").DeviceId)!.Value;
        using var data = File.OpenHandle(Path.Combine(poolDir, ThinPool.DataFile), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        bool paused = false;
        int leaves = 0;
        held.Reader.VisitMappings(root, leaf =>
        {
            if (!paused)
            {
                // Mid-walk: the pool must keep serving writes and committing (no lock is held here).
                paused = true;
                int before = Volatile.Read(ref done);
                var deadline = DateTime.UtcNow.AddSeconds(60);
                while (Volatile.Read(ref done) < before + 50 && DateTime.UtcNow < deadline)
                    Thread.Sleep(5);
                Assert.True(Volatile.Read(ref done) >= before + 50, "writes stalled while the metadata snapshot was being walked");
            }
            leaves++;
            for (int i = 0; i < leaf.NrEntries; i++)
            {
                long vb = (long)leaf.Key(i);
                ulong db = BlockTime.Unpack(leaf.Value64(i)).DataBlock;
                int len = (int)Math.Min(BlockSize, size - vb * BlockSize);
                RandomAccess.Read(data, image.AsSpan((int)(vb * BlockSize), len), (long)db * BlockSize);
            }
        });
        Assert.True(leaves >= 2, $"the walk covered {leaves} leaves; the test wants a pause between leaves");
        stop.Cancel();
        await writer;
        Assert.Equal(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(expected)),
            Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(image)));

        // The live volume moved on; the snapshot device reads the old image through the pool too.
        var live = new byte[size];
        await pool.OpenVolume("v").ReadAsync(0, live, CancellationToken.None);
        Assert.Equal(work.Model, live);
        var snap = new byte[size];
        await pool.OpenVolume("S").ReadAsync(0, snap, CancellationToken.None);
        Assert.Equal(expected, snap);

        held.Dispose();
        Assert.Null(pool.Pool.HeldMetadataSnapshot);
        await pool.DisposeAsync();
        var check = Tool.Run("thin_check", Path.Combine(poolDir, ThinPool.MetadataFile));
        Assert.True(check.ExitCode == 0, check.Stderr + check.Stdout);
        var dump = Tool.Run("thin_dump", Path.Combine(poolDir, ThinPool.MetadataFile));
        Assert.DoesNotContain("metadata_snap", dump.Stdout);
    }

    [Fact]
    public async Task ASecondReservationIsRefusedAndTheFirstStaysUsable()
    {
        using var dir = Tool.TempDir();
        await using var pool = TrackedPool.Create(dir.File("pool"), 64L << 20, new PoolSettings { DataBlockSize = BlockSize }, commitInterval: TimeSpan.Zero);
        var v = pool.CreateVolume("v", 8L * BlockSize);
        await v.WriteAsync(0, new byte[] { 1, 2, 3 }, fua: false, CancellationToken.None);
        using var held = pool.Pool.ReserveMetadataSnapshot();
        var e = Assert.ThrowsAny<Exception>(() => pool.Pool.ReserveMetadataSnapshot());
        Assert.Contains("already held", e.Message);
        Assert.Equal(new[] { (0UL, held.Mappings("v")[0].DataBlock) }, held.Mappings("v").Select(m => (m.VirtualBlock, m.DataBlock)));
    }
}
