using System.Security.Cryptography;
using BackupAppliance.Core;
using BackupAppliance.Thin.Pool;
using BackupAppliance.Thin.Tests.Support;
using static BackupAppliance.Thin.Tests.Support.VolumeBytes;

namespace BackupAppliance.Thin.Tests;

/// <summary>dm-thin semantics of the pool: snapshots, origins, discards, space, modes, durability.</summary>
public class ThinPoolTests
{
    private const int Bs = 65536;

    [Fact]
    public async Task SnapshotKeepsOldBytesSurvivesOriginDeleteAndSpaceReturns()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        var oldBytes = Bytes(8 * Bs, 1);
        await using (var pool = ThinPool.Create(path, 64L << 20, new PoolSettings()))
        {
            var v = pool.CreateVolume("v", 16L << 20);
            await v.WriteAsync(0, oldBytes, false, default);
            pool.Snapshot("v", "s");
            var s = pool.OpenVolume("s");
            // Overwrite partly and wholly: both break sharing; the snapshot keeps the old bytes.
            await v.WriteAsync(100, Bytes(10, 2), false, default);
            await v.WriteAsync(3 * Bs, Bytes(2 * Bs, 3), true, default);
            Assert.Equal(oldBytes, await Read(s, 0, 8 * Bs));
            var expected = (byte[])oldBytes.Clone();
            Bytes(10, 2).CopyTo(expected, 100);
            Bytes(2 * Bs, 3).CopyTo(expected, 3 * Bs);
            Assert.Equal(expected, await Read(v, 0, 8 * Bs));
            Assert.True(pool.Status().DataBlocksUsed == 11, $"8 shared + 3 copied blocks expected, {pool.Status().DataBlocksUsed} in use");

            pool.DeleteVolume("v");
            Assert.Equal(oldBytes, await Read(s, 0, 8 * Bs));
            Assert.Equal(8UL, pool.Status().DataBlocksUsed);
            pool.DeleteVolume("s");
            Assert.Equal(0UL, pool.Status().DataBlocksUsed);
        }
        Oracle.AssertCheckPasses(Path.Combine(path, "metadata"), "after deletes");
        // Passdown: freed blocks were punched out of the data file.
        var du = Tool.Run("du", "-k", Path.Combine(path, "data"));
        Assert.Equal("0", du.Stdout.Split('\t')[0]);
    }

    [Fact]
    public async Task PartialWritesZeroFillOrCopyFromTheOrigin()
    {
        using var dir = Tool.TempDir();
        string image = dir.File("origin.img");
        var originBytes = Bytes(4 * Bs, 7);
        File.WriteAllBytes(image, originBytes);
        await using var pool = ThinPool.Create(dir.File("pool"), 64L << 20, new PoolSettings());
        var plain = pool.CreateVolume("plain", 4 * Bs);
        var withOrigin = pool.CreateVolume("o", 4 * Bs, image);
        await plain.WriteAsync(Bs + 10, Bytes(20, 8), false, default);
        await withOrigin.WriteAsync(Bs + 10, Bytes(20, 8), false, default);

        var zeroFilled = new byte[4 * Bs];
        Bytes(20, 8).CopyTo(zeroFilled, Bs + 10);
        Assert.Equal(zeroFilled, await Read(plain, 0, 4 * Bs));
        var copied = (byte[])originBytes.Clone();
        Bytes(20, 8).CopyTo(copied, Bs + 10);
        Assert.Equal(copied, await Read(withOrigin, 0, 4 * Bs));
        // Discarding a provisioned block of an origin-backed volume reads the origin again.
        await withOrigin.DiscardAsync(Bs, Bs, false, default);
        Assert.Equal(originBytes, await Read(withOrigin, 0, 4 * Bs));
    }

    [Fact]
    public async Task ErrorIfNoSpaceFailsAtOnceAndResizeCompletesTheSameWork()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        await using var pool = ThinPool.Create(path, 16 * Bs, new PoolSettings { ErrorIfNoSpace = true, LowWaterPercent = 25 });
        var warnings = new List<string>();
        pool.Warning += warnings.Add;
        var v = pool.CreateVolume("v", 64 * Bs);
        await v.WriteAsync(0, new byte[11 * Bs].Select((_, i) => (byte)i).ToArray(), false, default);
        Assert.Empty(warnings); // 5 of 16 blocks free: above 25%
        await v.WriteAsync(11 * Bs, new byte[Bs].Select(_ => (byte)1).ToArray(), false, default);
        Assert.Empty(warnings); // 4 free: 25%, not below
        await v.WriteAsync(12 * Bs, new byte[Bs].Select(_ => (byte)1).ToArray(), false, default);
        Assert.Contains("below the low-water mark (3 of 16 blocks free", Assert.Single(warnings));
        var data = Bytes(32 * Bs, 9);
        var e = await Assert.ThrowsAsync<VolumeException>(() => v.WriteAsync(0, data, true, default).AsTask());
        Assert.Equal(VolumeError.NoSpace, e.Error);
        Assert.Contains("out of data space", e.Message);
        Assert.Equal(PoolMode.OutOfDataSpace, pool.Status().Mode);
        await v.FlushAsync(default);
        Oracle.AssertCheckPasses(Path.Combine(path, "metadata"), "after ENOSPC");
        pool.Resize(64 * Bs, null);
        Assert.Equal(PoolMode.Write, pool.Status().Mode);
        await v.WriteAsync(0, data, true, default);
        Assert.Equal(data, await Read(v, 0, 32 * Bs));
    }

    [Fact]
    public async Task WithoutErrorIfNoSpaceWritesWaitForAResize()
    {
        using var dir = Tool.TempDir();
        await using var pool = ThinPool.Create(dir.File("pool"), 16 * Bs, new PoolSettings { NoSpaceTimeoutSeconds = 30 });
        var v = pool.CreateVolume("v", 64 * Bs);
        var data = Bytes(32 * Bs, 10);
        var write = v.WriteAsync(0, data, true, default).AsTask();
        // The write is parked, not failed, until space is added.
        while (pool.Status().Mode != PoolMode.OutOfDataSpace)
            await Task.Delay(10);
        Assert.False(write.IsCompleted);
        pool.Resize(64 * Bs, null);
        await write.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(data, await Read(v, 0, 32 * Bs));
    }

    [Fact]
    public async Task WaitingWriteFailsWithNoSpaceAfterTheTimeout()
    {
        using var dir = Tool.TempDir();
        await using var pool = ThinPool.Create(dir.File("pool"), 4 * Bs, new PoolSettings { NoSpaceTimeoutSeconds = 0.2 });
        var v = pool.CreateVolume("v", 64 * Bs);
        var e = await Assert.ThrowsAsync<VolumeException>(() => v.WriteAsync(0, new byte[8 * Bs], false, default).AsTask());
        Assert.Equal(VolumeError.NoSpace, e.Error);
    }

    [Fact]
    public async Task MetadataExhaustionMakesThePoolReadOnlyUntilResized()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        await using var pool = ThinPool.Create(path, 1L << 30, new PoolSettings(), metadataSize: 256 << 10);
        var v = pool.CreateVolume("v", 1L << 30);
        var block = Bytes(4096, 11);
        for (int i = 0; i < 600; i++)
            await v.WriteAsync((long)i * Bs, block, false, default);
        // Each snapshot followed by a write into every leaf copies those leaves: metadata fills up.
        VolumeException? failure = null;
        for (int round = 0; round < 200 && failure is null; round++)
        {
            try
            {
                pool.Snapshot("v", $"s{round}");
                for (int i = 0; i < 600; i += 100)
                    await v.WriteAsync((long)i * Bs, block, false, default);
            }
            catch (VolumeException e) { failure = e; }
        }
        Assert.NotNull(failure);
        Assert.Contains("metadata space is exhausted", failure!.Message);
        Assert.Equal(PoolMode.ReadOnly, pool.Status().Mode);
        var again = await Assert.ThrowsAsync<VolumeException>(() => v.WriteAsync(0, block, false, default).AsTask());
        Assert.Equal(VolumeError.ReadOnly, again.Error);
        Oracle.AssertCheckPasses(Path.Combine(path, "metadata"), "after metadata exhaustion");
        pool.Resize(null, 16L << 20);
        Assert.Equal(PoolMode.Write, pool.Status().Mode);
        await v.WriteAsync(0, block, true, default);
        Assert.Equal(block, await Read(v, 0, 4096));
    }

    [Fact]
    public async Task NeedsCheckKeepsThePoolReadOnlyUntilPoolCheckClearsIt()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        await using (var pool = ThinPool.Create(path, 64L << 20, new PoolSettings()))
            await pool.CreateVolume("v", 1L << 20).WriteAsync(0, Bytes(Bs, 13), true, default);
        using (var md = ThinMetadata.Open(Path.Combine(path, "metadata")))
            md.SetNeedsCheck(true);
        await using (var pool = ThinPool.Open(path))
        {
            Assert.Equal(PoolMode.ReadOnly, pool.Status().Mode);
            Assert.True(pool.Status().NeedsCheck);
            var e = await Assert.ThrowsAsync<VolumeException>(() => pool.OpenVolume("v").WriteAsync(0, new byte[1], false, default).AsTask());
            Assert.Contains("pool check", e.Message);
            Assert.Equal(Bytes(Bs, 13), await Read(pool.OpenVolume("v"), 0, Bs)); // reads still work
        }
        var check = Tool.Bapp("pool", "check", "--pool", path);
        Assert.True(check.ExitCode == 0, check.Stderr);
        Assert.Contains("needs_check was set and is now cleared", check.Stdout);
        await using (var pool = ThinPool.Open(path))
        {
            Assert.Equal(PoolMode.Write, pool.Status().Mode);
            await pool.OpenVolume("v").WriteAsync(0, new byte[1], true, default);
        }
    }

    [Fact]
    public async Task PoolCheckFindsCatalogueProblems()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        await using (var pool = ThinPool.Create(path, 64L << 20, new PoolSettings()))
        {
            pool.CreateVolume("a", 1L << 20);
            pool.CreateVolume("b", 1L << 20);
        }
        // An orphan device and a name pointing nowhere.
        var cat = VolumeCatalogue.Load(path);
        var b = cat.Find("b")!;
        cat.Volumes.Remove(b);
        cat.Volumes.Add(b with { Name = "ghost", DeviceId = 77 });
        cat.Save(path);
        var r = Tool.Bapp("pool", "check", "--pool", path);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("volume 'ghost' names thin device 77, which the metadata does not have", r.Stderr);
        Assert.Contains($"thin device {b.DeviceId} has no volume in the catalogue", r.Stderr);
    }

    [Fact]
    public async Task CommittedWritesSurviveReopenAndMetadataStaysValid()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        var rng = new Random(14);
        var model = new byte[256 * Bs];
        await using (var pool = ThinPool.Create(path, 64L << 20, new PoolSettings()))
        {
            var v = pool.CreateVolume("v", model.Length);
            for (int i = 0; i < 300; i++)
            {
                int off = rng.Next(model.Length - 1), len = rng.Next(1, Math.Min(model.Length - off, 3 * Bs));
                if (rng.Next(10) == 0)
                {
                    await v.DiscardAsync(off, len, false, default);
                    long first = ((long)off + Bs - 1) / Bs * Bs, end = ((long)off + len) / Bs * Bs;
                    if (end > first)
                        Array.Clear(model, (int)first, (int)(end - first));
                }
                else
                {
                    var data = Bytes(len, i);
                    await v.WriteAsync(off, data, false, default);
                    data.CopyTo(model, off);
                }
                if (i % 50 == 0)
                    pool.Snapshot("v", $"s{i}");
            }
            await v.FlushAsync(default);
        }
        Oracle.AssertCheckPasses(Path.Combine(path, "metadata"), "closed pool");
        Assert.Equal(0, Tool.Bapp("thin", "check", "-q", Path.Combine(path, "metadata")).ExitCode);
        await using (var pool = ThinPool.Open(path))
            Assert.Equal(SHA256.HashData(model), SHA256.HashData(await Read(pool.OpenVolume("v"), 0, model.Length)));
    }
}
