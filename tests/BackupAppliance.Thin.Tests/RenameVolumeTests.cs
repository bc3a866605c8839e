using BackupAppliance.Core;
using BackupAppliance.Thin.Pool;
using BackupAppliance.Thin.Tests.Support;
using static BackupAppliance.Thin.Tests.Support.VolumeBytes;

namespace BackupAppliance.Thin.Tests;

/// <summary>Writable snapshots and renaming a volume (a backup receiver's stage-then-publish).</summary>
public class RenameVolumeTests
{
    private const int Bs = 65536;

    [Fact]
    public async Task WritableSnapshotSharesBlocksAndRenameToReadOnlyPublishesIt()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        var baseBytes = Bytes(8 * Bs, 1);
        var change = Bytes(Bs, 2);
        await using (var pool = ThinPool.Create(path, 64L << 20, new PoolSettings()))
        {
            var v = pool.CreateVolume("a.v.1", 8 * Bs);
            await v.WriteAsync(0, baseBytes, true, default);
            pool.RenameVolume("a.v.1", "a.v.1", readOnly: true);

            var staging = pool.WritableSnapshot("a.v.1", "a.v.staging");
            Assert.False(staging.IsReadOnly);
            Assert.Equal(8UL, pool.Status().DataBlocksUsed);
            await staging.WriteAsync(2 * Bs, change, true, default);
            Assert.Equal(9UL, pool.Status().DataBlocksUsed); // one block copied, seven still shared

            var point = pool.RenameVolume("a.v.staging", "a.v.2", readOnly: true);
            Assert.True(point.IsReadOnly);
            Assert.Equal(staging.Entry.DeviceId, point.Entry.DeviceId);
            Assert.Null(pool.Volumes.FirstOrDefault(e => e.Name == "a.v.staging"));
            // The old handle now writes to a read-only volume: refused, and nothing changes.
            var e = await Assert.ThrowsAsync<VolumeException>(() => staging.WriteAsync(0, change, true, default).AsTask());
            Assert.Equal(VolumeError.ReadOnly, e.Error);
            await Assert.ThrowsAsync<VolumeException>(() => pool.OpenVolume("a.v.1").WriteAsync(0, change, true, default).AsTask());
        }
        var expected = (byte[])baseBytes.Clone();
        change.CopyTo(expected, 2 * Bs);
        await using (var pool = ThinPool.Open(path))
        {
            Assert.Equal(new[] { "a.v.1", "a.v.2" }, pool.Volumes.Select(e => e.Name).Order());
            Assert.True(pool.Volumes.All(e => e.ReadOnly));
            Assert.Equal(baseBytes, await Read(pool.OpenVolume("a.v.1"), 0, 8 * Bs));
            Assert.Equal(expected, await Read(pool.OpenVolume("a.v.2"), 0, 8 * Bs));
            Assert.Equal("a.v.1", pool.Volumes.Single(e => e.Name == "a.v.2").SnapshotOf);
        }
        Oracle.AssertCheckPasses(Path.Combine(path, "metadata"), "after rename");
    }

    [Fact]
    public async Task RenameCarriesSnapshotsOriginNameAndCanMakeWritable()
    {
        using var dir = Tool.TempDir();
        await using var pool = ThinPool.Create(dir.File("pool"), 16L << 20, new PoolSettings());
        pool.CreateVolume("v", 4 * Bs);
        pool.Snapshot("v", "s");
        pool.RenameVolume("v", "w", readOnly: false);
        Assert.Equal("w", pool.Volumes.Single(e => e.Name == "s").SnapshotOf);
        var s = pool.RenameVolume("s", "t", readOnly: false);
        await s.WriteAsync(0, Bytes(100, 3), true, default);
        Assert.Equal(Bytes(100, 3), await Read(pool.OpenVolume("t"), 0, 100));
    }

    [Fact]
    public async Task BadRenamesNameTheProblemAndChangeNothing()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        await using var pool = ThinPool.Create(path, 16L << 20, new PoolSettings());
        pool.CreateVolume("a", Bs);
        pool.CreateVolume("b", Bs);
        string catalogue = Path.Combine(path, VolumeCatalogue.FileName);
        var before = File.ReadAllBytes(catalogue);

        var unknown = Assert.Throws<KeyNotFoundException>(() => pool.RenameVolume("nope", "c", readOnly: true));
        Assert.Contains("'nope'", unknown.Message);
        var duplicate = Assert.Throws<ArgumentException>(() => pool.RenameVolume("a", "b", readOnly: true));
        Assert.Contains("'b' already exists", duplicate.Message);
        var invalid = Assert.Throws<ArgumentException>(() => pool.RenameVolume("a", "x/y", readOnly: true));
        Assert.Contains("'x/y' is not a valid volume name", invalid.Message);
        Assert.Throws<KeyNotFoundException>(() => pool.WritableSnapshot("nope", "c"));

        Assert.Equal(before, File.ReadAllBytes(catalogue));
        Assert.Equal(new[] { "a", "b" }, pool.Volumes.Select(e => e.Name).Order());
        Assert.False(pool.OpenVolume("a").IsReadOnly);
    }
}
