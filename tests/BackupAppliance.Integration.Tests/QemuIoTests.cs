using BackupAppliance.Integration.Tests.Support;

namespace BackupAppliance.Integration.Tests;

/// <summary>"vol" (256 MiB, empty); "base" imported from an image with 2 MiB of 0x3c at its start; "base-snap" its snapshot.</summary>
public sealed class QemuIoPool() : PoolServer(new PoolSpec("512M", [new VolumeSpec("vol", 256L << 20)]), "qemu-io")
{
    public const long BaseSize = 16L << 20;
    public const int PatternLength = 2 << 20;

    protected override async Task SetUpAsync()
    {
        string image = Scratch.File("base.raw");
        await using (var f = new FileStream(image, FileMode.CreateNew))
        {
            f.SetLength(BaseSize);
            await f.WriteAsync(Enumerable.Repeat((byte)0x3c, PatternLength).ToArray());
        }
        await BappOkAsync("vol", "import", "base", "--from", image);
        await BappOkAsync("vol", "snapshot", "base", "base-snap");
    }
}

/// <summary>Acceptance 3: qemu-io writes and verifies patterns; the snapshot export refuses writes with a permission error.</summary>
public sealed class QemuIoTests(QemuIoPool pool) : IClassFixture<QemuIoPool>
{
    [Fact]
    public async Task Write_pattern_then_read_verifies()
    {
        var r = await QemuIo.RunAsync(pool.Uri("vol"), "write -P 0x5a 1M 4M", "read -P 0x5a 1M 4M", "read -P 0 0 1M", "read -P 0 5M 1M");
        QemuIo.AssertVerified(r, QemuIo.Wrote(1 << 20, 4 << 20), QemuIo.Read(1 << 20, 4 << 20), QemuIo.Read(0, 1 << 20), QemuIo.Read(5 << 20, 1 << 20));

        // A second connection sees the same bytes (they are in the pool, not in a client cache).
        var again = await QemuIo.RunAsync(pool.Uri("vol"), "read -P 0x5a 1M 4M");
        QemuIo.AssertVerified(again, QemuIo.Read(1 << 20, 4 << 20));
        pool.AssertNoUnexpectedErrors();
    }

    [Fact]
    public async Task Wrong_pattern_is_caught()
    {
        // The negative control: the verification the other tests rely on does fire.
        var r = await QemuIo.RunAsync(pool.Uri("vol"), "write -P 0x11 200M 64k", "read -P 0x22 200M 64k");
        Assert.Contains("Pattern verification failed", r.Output);
    }

    [Fact]
    public async Task Unaligned_small_writes_keep_their_neighbours()
    {
        // Partial-block writes: the rest of each 64 KiB block must keep what was there.
        const long at = 100L << 20;
        var r = await QemuIo.RunAsync(pool.Uri("vol"),
            $"write -P 0x61 {at} 192k", $"write -P 0x62 {at + 1000} 3000", $"write -P 0x63 {at + 65530} 20",
            $"read -P 0x61 {at} 1000", $"read -P 0x62 {at + 1000} 3000", $"read -P 0x61 {at + 4000} 61530",
            $"read -P 0x63 {at + 65530} 20", $"read -P 0x61 {at + 65550} 131058");
        QemuIo.AssertVerified(r, QemuIo.Read(at, 1000), QemuIo.Read(at + 1000, 3000), QemuIo.Read(at + 4000, 61530),
            QemuIo.Read(at + 65530, 20), QemuIo.Read(at + 65550, 131058));
    }

    [Fact]
    public async Task Write_to_the_snapshot_export_fails_with_a_permission_error()
    {
        // qemu-io opens read-write and gets "Permission denied" from the read-only export.
        var r = await QemuIo.RunAsync(pool.Uri("base-snap"), "write -P 0xff 0 1M");
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("Permission denied", r.Output);
        Assert.DoesNotContain("wrote ", r.Stdout);

        // A client that ignores the read-only flag and sends NBD_CMD_WRITE anyway gets EPERM from the server.
        var (client, go) = await RawNbdClient.OpenAsync(pool.Port, "base-snap", structured: false);
        await using (client)
        {
            Assert.True((go.Flags & Wire.FReadOnly) != 0, $"transmission flags 0x{go.Flags:x4} lack READ_ONLY");
            await client.SendAsync([.. Wire.Request(0, Wire.CmdWrite, 77, 0, 4096), .. Enumerable.Repeat((byte)0xff, 4096)]);
            var (error, cookie) = await client.ReadSimpleReplyAsync();
            Assert.Equal(77UL, cookie);
            Assert.Equal(Wire.EPerm, error);
        }

        // Neither got through: the snapshot still reads the imported pattern, and so does its origin.
        var read = await QemuIo.ReadOnlyAsync(pool.Uri("base-snap"), $"read -P 0x3c 0 {QemuIoPool.PatternLength}", $"read -P 0 {QemuIoPool.PatternLength} 14M");
        QemuIo.AssertVerified(read, QemuIo.Read(0, QemuIoPool.PatternLength), QemuIo.Read(QemuIoPool.PatternLength, 14 << 20));
        var origin = await QemuIo.ReadOnlyAsync(pool.Uri("base"), $"read -P 0x3c 0 {QemuIoPool.PatternLength}");
        QemuIo.AssertVerified(origin, QemuIo.Read(0, QemuIoPool.PatternLength));
        pool.AssertNoUnexpectedErrors();
    }
}
