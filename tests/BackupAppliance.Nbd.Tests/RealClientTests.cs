using System.Text.RegularExpressions;
using BackupAppliance.Core;
using BackupAppliance.Nbd.Tests.Support;

namespace BackupAppliance.Nbd.Tests;

/// <summary>nbdinfo (libnbd) against the server: listing, export details, the Unix socket.</summary>
public sealed class NbdInfoTests(NbdServerFixture f) : IClassFixture<NbdServerFixture>
{
    [Fact]
    public async Task List_shows_every_export_with_its_size_and_description()
    {
        var r = await Tool.RunOkAsync("nbdinfo", "--list", $"nbd://127.0.0.1:{f.Port}");
        var sizes = Regex.Matches(r.Stdout, "export=\"([^\"]*)\":\\s*\\n(?:\\s*description: ([^\\n]*)\\n)?\\s*export-size: (\\d+)")
            .ToDictionary(m => m.Groups[1].Value, m => (Size: long.Parse(m.Groups[3].Value), Description: m.Groups[2].Value));
        Assert.Equal(["disk", "small", "ro", "scratch"], sizes.Keys.ToArray());
        Assert.Equal(NbdServerFixture.DiskSize, sizes["disk"].Size);
        Assert.Equal(NbdServerFixture.SmallSize, sizes["small"].Size);
        Assert.Equal(NbdServerFixture.RoSize, sizes["ro"].Size);
        Assert.Equal(NbdServerFixture.ScratchSize, sizes["scratch"].Size);
        Assert.Equal("test disk", sizes["disk"].Description);
        Assert.Matches(@"export=""ro"":[^=]*is_read_only: true", r.Stdout);
        Assert.Matches(@"export=""disk"":[^=]*is_read_only: false", r.Stdout);
        f.AssertNoFaults();
    }

    [Fact]
    public async Task Export_details_show_size_flags_and_block_size_constraints()
    {
        var r = await Tool.RunOkAsync("nbdinfo", f.Uri("disk"));
        var fields = Fields(r.Stdout);
        Assert.Equal("1073741824 (1G)", fields["export-size"]);
        Assert.Equal("1", fields["block_size_minimum"]);
        Assert.Equal("65536", fields["block_size_preferred"]);
        Assert.Equal("33554432", fields["block_size_maximum"]);
        Assert.Equal("false", fields["is_read_only"]);
        foreach (var can in new[] { "can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn", "can_df" })
            Assert.True(fields[can] == "true", $"{can} in\n{r.Stdout}");
        Assert.Contains("base:allocation", r.Stdout);
        Assert.Contains("newstyle-fixed", r.Stdout);

        var ro = Fields((await Tool.RunOkAsync("nbdinfo", f.Uri("ro"))).Stdout);
        Assert.Equal("true", ro["is_read_only"]);
        Assert.Equal("false", ro["can_trim"]);
        Assert.Equal("false", ro["can_zero"]);
    }

    [Fact]
    public async Task Empty_export_name_is_the_first_export()
    {
        var r = await Tool.RunOkAsync("nbdinfo", $"nbd://127.0.0.1:{f.Port}");
        Assert.Equal("1073741824 (1G)", Fields(r.Stdout)["export-size"]);
    }

    [Fact]
    public async Task Unknown_export_is_refused()
    {
        var r = await Tool.RunAsync("nbdinfo", f.Uri("nope"));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("nope", r.Output);
    }

    [Fact]
    public async Task Serves_over_the_unix_socket()
    {
        var r = await Tool.RunOkAsync("nbdinfo", f.UnixUri("small"));
        Assert.Equal("67108864 (64M)", Fields(r.Stdout)["export-size"]);
    }

    internal static Dictionary<string, string> Fields(string nbdinfoOutput) =>
        nbdinfoOutput.Split('\n')
            .Select(l => l.Trim())
            .Where(l => l.Contains(": "))
            .Select(l => l.Split(": ", 2))
            .GroupBy(p => p[0])
            .ToDictionary(g => g.Key, g => g.First()[1]);
}

/// <summary>qemu-img convert of 64 MiB of random bytes into an export and back.</summary>
public sealed class QemuImgTests(NbdServerFixture f) : IClassFixture<NbdServerFixture>
{
    [Fact]
    public async Task Convert_to_export_and_back_reproduces_the_bytes()
    {
        using var dir = new TempDir();
        var data = new byte[NbdServerFixture.SmallSize];
        new Random(4242).NextBytes(data);
        string source = dir.File("source.raw"), back = dir.File("back.raw");
        await File.WriteAllBytesAsync(source, data);

        await Tool.RunOkAsync("qemu-img", "convert", "-f", "raw", "-O", "raw", source, f.Uri("small"));
        await Tool.RunOkAsync("qemu-img", "convert", "-f", "raw", "-O", "raw", f.Uri("small"), back);

        string expected = Hex.Sha256(data);
        Assert.Equal(expected, await Hex.Sha256FileAsync(back));
        var onServer = new byte[data.Length];
        await f.Small.ReadAsync(0, onServer, CancellationToken.None);
        Assert.Equal(expected, Hex.Sha256(onServer));
        f.AssertNoFaults();
    }
}

/// <summary>qemu-io commands against the writable 1 GiB export and the read-only one.</summary>
public sealed class QemuIoTests(NbdServerFixture f) : IClassFixture<NbdServerFixture>
{
    private Task<Tool.Result> QemuIo(string export, params string[] commands) =>
        Tool.RunAsync("qemu-io", ["-f", "raw", f.Uri(export), .. commands.SelectMany(c => new[] { "-c", c })]);

    // qemu-io defaults to writethrough caching, which puts FUA on every write.
    private Task<Tool.Result> QemuIoWriteback(string export, params string[] commands) =>
        Tool.RunAsync("qemu-io", ["-t", "writeback", "-f", "raw", f.Uri(export), .. commands.SelectMany(c => new[] { "-c", c })]);

    [Fact]
    public async Task Write_pattern_then_read_verifies()
    {
        var r = await QemuIo("disk", "write -P 0xab 1M 4M", "read -P 0xab 1M 4M");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("wrote 4194304/4194304 bytes at offset 1048576", r.Stdout);
        Assert.Contains("read 4194304/4194304 bytes at offset 1048576", r.Stdout);
        Assert.DoesNotContain("Pattern verification failed", r.Output);

        var onServer = new byte[4 << 20];
        await f.Disk.ReadAsync(1 << 20, onServer, CancellationToken.None);
        Assert.All(onServer, b => Assert.Equal(0xab, b));
        f.AssertNoFaults();
    }

    [Fact]
    public async Task Wrong_pattern_is_caught_by_qemu_io()
    {
        // The negative control: the verification the other tests rely on does fire.
        var r = await QemuIo("disk", "write -P 0x11 200M 64k", "read -P 0x22 200M 64k");
        Assert.Contains("Pattern verification failed", r.Output);
    }

    [Fact]
    public async Task Discard_unmaps_the_block()
    {
        const long at = 16L << 20;
        var r = await QemuIo("disk", $"write -P 0xcd {at} 128k", $"discard {at} 64k", $"read -P 0 {at} 64k", $"read -P 0xcd {at + 65536} 64k");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains($"discard 65536/65536 bytes at offset {at}", r.Stdout);
        Assert.DoesNotContain("Pattern verification failed", r.Output);
        var map = await f.Disk.GetAllocationAsync(at, 128 << 10, CancellationToken.None);
        Assert.Equal([new VolumeExtent(at, 65536, true), new VolumeExtent(at + 65536, 65536, false)], map);
    }

    [Fact]
    public async Task Write_zeroes_with_and_without_unmap()
    {
        const long at = 32L << 20;
        var r = await QemuIo("disk", $"write -P 0xee {at} 2M", $"write -z {at} 1M", $"write -z -u {at + (1 << 20)} 1M", $"read -P 0 {at} 2M");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.DoesNotContain("Pattern verification failed", r.Output);
        var zeroes = f.Disk.Calls.Where(c => c.Op == "zero" && c.Offset >= at && c.Offset < at + (2 << 20)).ToList();
        Assert.Contains(zeroes, c => c.Offset == at && c.Length == 1 << 20 && c.NoHole);
        Assert.Contains(zeroes, c => c.Offset == at + (1 << 20) && c.Length == 1 << 20 && !c.NoHole);
        // Without unmap the range stays allocated; with it the whole blocks become holes.
        var map = await f.Disk.GetAllocationAsync(at, 2 << 20, CancellationToken.None);
        Assert.Equal([new VolumeExtent(at, 1 << 20, false), new VolumeExtent(at + (1 << 20), 1 << 20, true)], map);
    }

    [Fact]
    public async Task Fua_write_reaches_the_volume_as_fua()
    {
        const long at = 48L << 20;
        var r = await QemuIoWriteback("disk", $"write -f -P 0x42 {at} 64k", $"write -P 0x43 {at + 65536} 64k", "flush");
        Assert.True(r.ExitCode == 0, r.ToString());
        var writes = f.Disk.Calls.Where(c => c.Op == "write" && c.Offset >= at && c.Offset < at + (1 << 20)).ToList();
        Assert.Contains(writes, c => c.Offset == at && c.Fua);
        Assert.Contains(writes, c => c.Offset == at + 65536 && !c.Fua);
        Assert.Contains(f.Disk.Calls, c => c.Op == "flush");
    }

    [Fact]
    public async Task Read_only_export_refuses_writes_and_serves_reads()
    {
        var write = await QemuIo("ro", "write -P 0xab 0 4k");
        Assert.NotEqual(0, write.ExitCode);
        Assert.Contains("Permission denied", write.Output);

        var read = await Tool.RunAsync("qemu-io", "-r", "-f", "raw", f.Uri("ro"), "-c", "read -P 0x5a 0 1M", "-c", "read -P 0 1M 1M");
        Assert.True(read.ExitCode == 0, read.ToString());
        Assert.DoesNotContain("Pattern verification failed", read.Output);
        var data = new byte[1 << 20];
        await f.RoBacking.ReadAsync(0, data, CancellationToken.None);
        Assert.All(data, b => Assert.Equal(0x5a, b));
    }
}

/// <summary>nbdcopy of the whole 1 GiB export to a file, and nbdinfo --map of what is allocated.</summary>
public sealed class NbdCopyTests(NbdServerFixture f) : IClassFixture<NbdServerFixture>
{
    /// <summary>Scattered, block-aligned regions (offset, length) written before copying.</summary>
    private static readonly (long Offset, long Length)[] Regions =
    [
        (0, 1L << 20),
        (100L << 20, 3L << 20),
        ((513L << 20) + 65536, 1L << 20),
        (NbdServerFixture.DiskSize - (2L << 20), 2L << 20),
    ];

    [Fact]
    public async Task Copy_of_the_export_matches_and_the_map_shows_only_written_extents()
    {
        var rng = new Random(777);
        foreach (var (offset, length) in Regions)
        {
            var data = new byte[length];
            rng.NextBytes(data);
            await f.Disk.WriteAsync(offset, data, false, CancellationToken.None);
        }
        using var dir = new TempDir();
        string image = dir.File("disk.img");

        await Tool.RunOkAsync("nbdcopy", f.Uri("disk"), image);

        Assert.Equal(NbdServerFixture.DiskSize, new FileInfo(image).Length);
        Assert.Equal(await VolumeHashAsync(f.Disk), await Hex.Sha256FileAsync(image));

        var map = await Tool.RunOkAsync("nbdinfo", "--map", f.Uri("disk"));
        var extents = map.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(p => (Offset: long.Parse(p[0]), Length: long.Parse(p[1]), Type: int.Parse(p[2]), Text: string.Join(' ', p[3..])))
            .ToList();
        Assert.Equal(0, extents[0].Offset);
        Assert.Equal(NbdServerFixture.DiskSize, extents.Sum(e => e.Length));
        Assert.Equal(Regions.Select(r => (r.Offset, r.Length)), extents.Where(e => e.Type == 0).Select(e => (e.Offset, e.Length)));
        Assert.All(extents.Where(e => e.Type != 0), e => Assert.Equal((3, "hole,zero"), (e.Type, e.Text)));
        Assert.All(extents.Where(e => e.Type == 0), e => Assert.Equal("data", e.Text));
        f.AssertNoFaults();
    }

    [Fact]
    public async Task Copy_from_a_file_into_an_export_over_several_connections()
    {
        using var dir = new TempDir();
        var data = new byte[NbdServerFixture.ScratchSize];
        new Random(99).NextBytes(data);
        data.AsSpan(8 << 20, 8 << 20).Clear(); // a zero run nbdcopy may send as WRITE_ZEROES
        string source = dir.File("src.raw");
        await File.WriteAllBytesAsync(source, data);

        await Tool.RunOkAsync("nbdcopy", "--connections=4", "--requests=32", source, f.Uri("scratch"));

        var onServer = new byte[data.Length];
        await f.Scratch.ReadAsync(0, onServer, CancellationToken.None);
        Assert.Equal(Hex.Sha256(data), Hex.Sha256(onServer));
        f.AssertNoFaults();
    }

    private static async Task<string> VolumeHashAsync(IBlockVolume volume)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        var buffer = new byte[16 << 20];
        for (long pos = 0; pos < volume.Size; pos += buffer.Length)
        {
            await volume.ReadAsync(pos, buffer, CancellationToken.None);
            hash.AppendData(buffer);
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }
}
