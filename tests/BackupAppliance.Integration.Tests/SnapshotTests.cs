using BackupAppliance.Integration.Tests.Support;

namespace BackupAppliance.Integration.Tests;

/// <summary>
/// Acceptance 6: a snapshot taken with the CLI between server runs keeps the old bytes while its
/// origin is overwritten through NBD, outlives the deleted origin, and deleting it too gives all
/// data space back.
/// </summary>
public sealed class SnapshotTests
{
    private const long Size = 64L << 20;

    [Fact]
    public async Task Snapshot_keeps_old_bytes_outlives_its_origin_and_frees_space_when_deleted()
    {
        await using var pool = await PoolServer.StartNewAsync(new PoolSpec("256M", [new VolumeSpec("origin", Size)]), "snap");
        await pool.StopAsync();
        var empty = await pool.StatusAsync();
        await pool.StartAsync();

        // Old content: 8 MiB of 0xa1 at 0, 4 MiB of 0xa2 at 20 MiB, the rest never written.
        var write = await QemuIo.RunAsync(pool.Uri("origin"), "write -P 0xa1 0 8M", "write -P 0xa2 20M 4M");
        QemuIo.AssertVerified(write, QemuIo.Wrote(0, 8 << 20), QemuIo.Wrote(20 << 20, 4 << 20));
        await pool.StopAsync();
        var written = await pool.StatusAsync();
        Assert.Equal(empty.DataBlocksUsed + (12UL << 20) / (ulong)written.DataBlockSize, written.DataBlocksUsed);

        await pool.BappOkAsync("vol", "snapshot", "origin", "snap");
        var afterSnapshot = await pool.StatusAsync();
        Assert.Equal(written.DataBlocksUsed, afterSnapshot.DataBlocksUsed); // O(1): shares every block
        await pool.StartAsync();

        // Change the origin through its export: overwrite whole and partial blocks, zero with unmap,
        // discard shared blocks, write fresh space.
        var overwrite = await QemuIo.RunAsync(pool.Uri("origin"),
            "write -P 0xb1 0 2M", "write -P 0xb2 2M 1000", "write -z -u 4M 1M", "discard 20M 4M", "write -P 0xb3 40M 1M",
            "read -P 0xb1 0 2M", "read -P 0xb2 2M 1000", $"read -P 0xa1 {(2 << 20) + 1000} {(2 << 20) - 1000}", "read -P 0 4M 1M",
            "read -P 0xa1 5M 3M", "read -P 0 20M 4M", "read -P 0xb3 40M 1M");
        QemuIo.AssertVerified(overwrite, QemuIo.Read(0, 2 << 20), QemuIo.Read(2 << 20, 1000), QemuIo.Read((2 << 20) + 1000, (2 << 20) - 1000),
            QemuIo.Read(4 << 20, 1 << 20), QemuIo.Read(5 << 20, 3 << 20), QemuIo.Read(20 << 20, 4 << 20), QemuIo.Read(40 << 20, 1 << 20));
        await AssertOldContentAsync(pool);

        await pool.StopAsync();
        await pool.ThinCheckAsync();
        // Sharing broken only where the origin wrote: the snapshot's 192 blocks, plus 32 (0-2M) + 1 (the
        // block at 2M) + 16 (40M) new ones for the origin; zeroing with unmap and discarding only unmapped.
        var shared = await pool.StatusAsync();
        Assert.Equal(empty.DataBlocksUsed + 192 + 32 + 1 + 16, shared.DataBlocksUsed);
        await pool.BappOkAsync("vol", "delete", "origin");
        await pool.ThinCheckAsync();
        Assert.Equal(empty.DataBlocksUsed + 192, (await pool.StatusAsync()).DataBlocksUsed);
        await pool.StartAsync();

        var listed = await NbdInfo.ListAsync(pool.ListUri);
        Assert.Equal(["snap"], listed.Select(e => e.Name));
        Assert.True(listed[0].ReadOnly);
        await AssertOldContentAsync(pool);

        await pool.StopAsync();
        var withSnapOnly = await pool.StatusAsync();
        Assert.Equal(empty.DataBlocksUsed + (12UL << 20) / (ulong)withSnapOnly.DataBlockSize, withSnapOnly.DataBlocksUsed);
        await pool.BappOkAsync("vol", "delete", "snap");
        var final = await pool.StatusAsync();
        Assert.Equal(empty.DataBlocksUsed, final.DataBlocksUsed);
        Assert.Equal(0, final.Volumes);
        // ... and on disk: the freed blocks are punched out of the sparse data file (about 15 MiB were written).
        long allocated = await AllocatedBytesAsync(Path.Combine(pool.PoolDir, "data"));
        Assert.True(allocated < 1 << 20, $"the data file still occupies {allocated} bytes after every volume was deleted");
        await pool.ThinCheckAsync();
        await pool.PoolCheckAsync();
    }

    private static async Task<long> AllocatedBytesAsync(string file)
    {
        var r = await Tool.RunOkAsync("stat", "-c", "%b %B", file);
        var p = r.Stdout.Trim().Split(' ');
        return long.Parse(p[0]) * long.Parse(p[1]);
    }

    /// <summary>The snapshot export reads exactly what the origin held when the snapshot was taken.</summary>
    private static async Task AssertOldContentAsync(PoolServer pool)
    {
        var r = await QemuIo.ReadOnlyAsync(pool.Uri("snap"), "read -P 0xa1 0 8M", "read -P 0 8M 12M", "read -P 0xa2 20M 4M", $"read -P 0 24M {Size - (24 << 20)}");
        QemuIo.AssertVerified(r, QemuIo.Read(0, 8 << 20), QemuIo.Read(8 << 20, 12 << 20), QemuIo.Read(20 << 20, 4 << 20), QemuIo.Read(24 << 20, Size - (24 << 20)));
    }
}
