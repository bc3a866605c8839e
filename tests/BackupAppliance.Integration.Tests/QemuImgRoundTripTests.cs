using BackupAppliance.Integration.Tests.Support;

namespace BackupAppliance.Integration.Tests;

public sealed class QemuImgPool() : PoolServer(new PoolSpec("256M", [new VolumeSpec("disk", Size)]), "qemu-img")
{
    public const long Size = 64L << 20;
}

/// <summary>Acceptance 2: qemu-img convert of 64 MiB of random bytes into an export and back out.</summary>
public sealed class QemuImgRoundTripTests(QemuImgPool pool) : IClassFixture<QemuImgPool>
{
    [Fact]
    public async Task Convert_in_and_out_reproduces_the_bytes_and_they_persist_in_the_pool()
    {
        var data = new byte[QemuImgPool.Size];
        new Random(20261121).NextBytes(data);
        string expected = Sha.Of(data);
        string source = pool.Scratch.File("source.raw"), back = pool.Scratch.File("back.raw"), exported = pool.Scratch.File("exported.raw");
        await File.WriteAllBytesAsync(source, data);

        await Tool.RunOkAsync("qemu-img", "convert", "-f", "raw", "-O", "raw", source, pool.Uri("disk"));
        await Tool.RunOkAsync("qemu-img", "convert", "-f", "raw", "-O", "raw", pool.Uri("disk"), back);

        Assert.Equal(QemuImgPool.Size, new FileInfo(back).Length);
        Assert.Equal(expected, await Sha.FileAsync(back));

        // What the server acknowledged is in the pool after a clean stop: the real thin_check
        // accepts the metadata, every block is mapped, and the CLI's export reads the same bytes.
        await pool.StopAsync();
        await pool.ThinCheckAsync();
        var disk = (await pool.VolumesAsync()).Single(v => v.Name == "disk");
        Assert.Equal(QemuImgPool.Size, disk.MappedBytes);
        await pool.BappOkAsync("vol", "export", "disk", "--to", exported);
        Assert.Equal(expected, await Sha.FileAsync(exported));
        await pool.StartAsync();
    }
}
