using BackupAppliance.Thin.Kernel;
using BackupAppliance.Thin.Tests.Support;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// <see cref="DmsetupThinPool"/> against a stand-in dmsetup (<see cref="FakeDmsetup"/>) over a real
/// metadata file: the exact command lines, the status read back from the file, and each failure as
/// its typed error with dmsetup's own words.
/// </summary>
public class DmsetupThinPoolTests
{
    [Fact]
    public async Task MessagesAndStatusAreTheDocumentedCommandLines()
    {
        using var fake = new FakeDmsetup();
        var pool = new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable);

        var before = await pool.StatusAsync();
        Assert.Equal((3UL, (ulong?)null, KernelPoolMode.ReadWrite, false), (before.TransactionId, before.HeldRoot, before.Mode, before.NeedsCheck));
        var sb = RawPoolEdit.Superblock(fake.Metadata);
        Assert.Equal((sb.MetadataSpaceMapRoot.NrAllocated, sb.MetadataSpaceMapRoot.NrBlocks, sb.DataSpaceMapRoot.NrAllocated, 1024UL),
            (before.MetadataUsed, before.MetadataTotal, before.DataUsed, before.DataTotal));

        await pool.ReserveMetadataSnapshotAsync();
        Assert.Equal(8UL, (await pool.StatusAsync()).HeldRoot); // mksnap.py's block, as thin_delta reports (FORMATS.md §10.3)
        Assert.Equal(0, Tool.Run("thin_check", "-m", fake.Metadata).ExitCode);
        await pool.ReleaseMetadataSnapshotAsync();
        Assert.Null((await pool.StatusAsync()).HeldRoot);

        await pool.CreateSnapshotAsync(5, 0);
        await pool.DeleteAsync(5);
        Assert.Equal(new[]
        {
            FakeDmsetup.Status, FakeDmsetup.Reserve, FakeDmsetup.Status, FakeDmsetup.Release, FakeDmsetup.Status,
            $"message {FakeDmsetup.Pool} 0 create_snap 5 0", $"message {FakeDmsetup.Pool} 0 delete 5",
        }, fake.CallLog);
    }

    [Fact]
    public async Task ASecondReserveAndAReleaseOfNothingAreTypedErrors()
    {
        using var fake = new FakeDmsetup();
        var pool = new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable);
        var e = await Assert.ThrowsAsync<KernelPoolException>(() => pool.ReleaseMetadataSnapshotAsync());
        Assert.Equal(KernelPoolError.NoSnapshotHeld, e.Error);
        Assert.Contains("Invalid argument", e.Message);

        await pool.ReserveMetadataSnapshotAsync();
        byte[] held = File.ReadAllBytes(fake.Metadata);
        e = await Assert.ThrowsAsync<KernelPoolException>(() => pool.ReserveMetadataSnapshotAsync());
        Assert.Equal(KernelPoolError.SnapshotAlreadyHeld, e.Error);
        Assert.Contains("Device or resource busy", e.Message);
        Assert.Contains($"dmsetup message {FakeDmsetup.Pool} 0 release_metadata_snap", e.Message);
        Assert.Equal(held, File.ReadAllBytes(fake.Metadata));
    }

    [Fact]
    public async Task AMissingDmsetupSaysWhatToInstall()
    {
        var pool = new DmsetupThinPool(FakeDmsetup.Pool, "/nonexistent/sbin/dmsetup");
        var e = await Assert.ThrowsAsync<KernelPoolException>(() => pool.StatusAsync());
        Assert.Equal(KernelPoolError.ToolMissing, e.Error);
        Assert.Contains("/nonexistent/sbin/dmsetup", e.Message);
        Assert.Contains("install the dmsetup package", e.Message);

        e = Assert.Throws<KernelPoolException>(() => DmsetupThinPool.ResolveExecutable("dmsetup", "/nonexistent/a:/nonexistent/b"));
        Assert.Equal(KernelPoolError.ToolMissing, e.Error);
        Assert.Contains("dmsetup not found on PATH (/nonexistent/a:/nonexistent/b): install the dmsetup package", e.Message);
        Assert.Equal("/bin/sh", DmsetupThinPool.ResolveExecutable("sh", "/nonexistent/a::/bin"));
    }

    [Fact]
    public async Task ADmsetupThatCannotBeExecutedIsNotCalledMissing()
    {
        using var dir = Tool.TempDir();
        string notExecutable = dir.File("dmsetup");
        File.WriteAllText(notExecutable, "#!/bin/sh\nexit 0\n");
        var e = await Assert.ThrowsAsync<KernelPoolException>(() => new DmsetupThinPool(FakeDmsetup.Pool, notExecutable).StatusAsync());
        Assert.Equal(KernelPoolError.CommandFailed, e.Error);
        Assert.StartsWith($"could not run {notExecutable}: ", e.Message);
        Assert.Contains("Permission denied", e.Message);
        Assert.DoesNotContain("install", e.Message);
    }

    [Fact]
    public async Task AMissingPoolDeviceNamesItWithDmsetupsOwnMessage()
    {
        using var fake = new FakeDmsetup();
        byte[] original = File.ReadAllBytes(fake.Metadata);
        var pool = new DmsetupThinPool("vg-other-tpool", fake.Executable);

        var e = await Assert.ThrowsAsync<KernelPoolException>(() => pool.StatusAsync());
        Assert.Equal(KernelPoolError.DeviceMissing, e.Error);
        Assert.Contains("thin pool device vg-other-tpool does not exist", e.Message);
        Assert.Contains("Device does not exist. / Command failed.", e.Message);

        e = await Assert.ThrowsAsync<KernelPoolException>(() => pool.ReserveMetadataSnapshotAsync());
        Assert.Equal(KernelPoolError.DeviceMissing, e.Error);
        Assert.Contains("device-mapper: message ioctl on vg-other-tpool  failed: No such device or address", e.Message);
        Assert.Equal(original, File.ReadAllBytes(fake.Metadata));
    }

    [Fact]
    public async Task NoDeviceMapperDriverIsReportedAsSuch()
    {
        using var fake = new FakeDmsetup();
        File.WriteAllText(fake.NoDriver, "");
        var e = await Assert.ThrowsAsync<KernelPoolException>(() => new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable).StatusAsync());
        Assert.Equal(KernelPoolError.DriverMissing, e.Error);
        Assert.Contains("Failure to communicate with kernel device-mapper driver", e.Message);
    }

    [Fact]
    public async Task OtherFailuresCarryTheExitCodeAndStderr()
    {
        using var fake = new FakeDmsetup();
        File.WriteAllText(fake.MessageError, "device-mapper: message ioctl on vg-pool-tpool  failed: No data available");
        var e = await Assert.ThrowsAsync<KernelPoolException>(() => new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable).DeleteAsync(7));
        Assert.Equal(KernelPoolError.CommandFailed, e.Error);
        Assert.Equal($"`dmsetup message {FakeDmsetup.Pool} 0 delete 7` exited with 1: device-mapper: message ioctl on vg-pool-tpool  failed: No data available / Command failed.", e.Message);
    }

    [Fact]
    public async Task AMalformedStatusFromDmsetupNamesTheField()
    {
        using var fake = new FakeDmsetup();
        File.WriteAllText(fake.StatusOverride, "0 131072 thin-pool 3 11/4096 x/1024 - rw discard_passdown queue_if_no_space - 1024\n");
        var e = await Assert.ThrowsAsync<KernelPoolException>(() => new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable).StatusAsync());
        Assert.Equal(KernelPoolError.MalformedStatus, e.Error);
        Assert.Contains("field 'used/total data blocks' is 'x'", e.Message);
    }

    [Fact]
    public async Task BadArgumentsAreRefusedBeforeDmsetupRuns()
    {
        using var fake = new FakeDmsetup();
        var pool = new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable);
        Assert.Contains("16777215", (await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => pool.CreateSnapshotAsync(1UL << 24, 0))).Message);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => pool.DeleteAsync(1UL << 24));
        Assert.Contains("origin", (await Assert.ThrowsAsync<ArgumentException>(() => pool.CreateSnapshotAsync(3, 3))).Message);
        Assert.Throws<ArgumentException>(() => new DmsetupThinPool("vg-pool tpool", fake.Executable));
        Assert.Empty(fake.CallLog);
    }
}
