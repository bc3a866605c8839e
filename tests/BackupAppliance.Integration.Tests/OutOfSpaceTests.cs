using System.Diagnostics;
using BackupAppliance.Integration.Tests.Support;
using Xunit.Abstractions;

namespace BackupAppliance.Integration.Tests;

/// <summary>
/// Acceptance 7: a pool too small for the workload (8 MiB of data under a 64 MiB volume) fails the
/// write with ENOSPC — at once with --error-if-no-space, after the no-space timeout otherwise —
/// leaves metadata that thin_check accepts, and after <c>bapp pool resize</c> the same write succeeds.
/// </summary>
public sealed class OutOfSpaceTests(ITestOutputHelper output)
{
    private const string Write32M = "write -P 1 0 32M";

    [Fact]
    public async Task Error_if_no_space_fails_the_write_at_once_and_a_resize_recovers()
    {
        await using var pool = await PoolServer.StartNewAsync(
            new PoolSpec("8M", [new VolumeSpec("vol", 64L << 20)], ["--error-if-no-space"]), "enospc-error");

        var (r, elapsed) = await TimedAsync(() => QemuIo.RunAsync(pool.Uri("vol"), Write32M));
        output.WriteLine($"failed after {elapsed.TotalSeconds:F1} s:\n{r}");
        AssertNoSpace(r);
        // No waiting for a resize: well under the 60 s default timeout the other mode would use.
        Assert.True(elapsed < TimeSpan.FromSeconds(10), $"the write took {elapsed.TotalSeconds:F1} s to fail");

        await ResizeAndRetryAsync(pool);
    }

    [Fact]
    public async Task No_space_timeout_fails_the_write_after_the_timeout_and_a_resize_recovers()
    {
        await using var pool = await PoolServer.StartNewAsync(
            new PoolSpec("8M", [new VolumeSpec("vol", 64L << 20)], ["--no-space-timeout", "2"]), "enospc-timeout");

        var (r, elapsed) = await TimedAsync(() => QemuIo.RunAsync(pool.Uri("vol"), Write32M));
        output.WriteLine($"failed after {elapsed.TotalSeconds:F1} s:\n{r}");
        AssertNoSpace(r);
        // The write waited for space for the configured 2 s before it failed.
        Assert.True(elapsed >= TimeSpan.FromSeconds(1.9), $"the write failed after {elapsed.TotalSeconds:F1} s, before the 2 s timeout");
        Assert.True(elapsed < TimeSpan.FromSeconds(20), $"the write took {elapsed.TotalSeconds:F1} s to fail");

        await ResizeAndRetryAsync(pool);
    }

    private static void AssertNoSpace(ToolResult r)
    {
        Assert.NotEqual(0, r.ExitCode);
        Assert.True(r.Output.Contains("write failed: No space left on device"), $"expected ENOSPC:\n{r}");
        Assert.DoesNotContain("wrote ", r.Stdout);
    }

    private static async Task ResizeAndRetryAsync(PoolServer pool)
    {
        await pool.StopAsync();
        await pool.ThinCheckAsync();
        var full = await pool.StatusAsync();
        Assert.Equal(128UL, full.DataBlocksTotal);

        var resize = await pool.BappOkAsync("pool", "resize", "--data-size", "128M");
        Assert.Contains("2048 data blocks", resize.Stdout);
        Assert.Contains("mode write", resize.Stdout);
        await pool.ThinCheckAsync();
        await pool.StartAsync();

        var r = await QemuIo.RunAsync(pool.Uri("vol"), Write32M, "read -P 1 0 32M", "read -P 0 32M 32M");
        QemuIo.AssertVerified(r, QemuIo.Wrote(0, 32 << 20), QemuIo.Read(0, 32 << 20), QemuIo.Read(32 << 20, 32 << 20));

        await pool.StopAsync();
        await pool.ThinCheckAsync();
        var status = await pool.StatusAsync();
        Assert.Equal("Write", status.Mode);
        Assert.Equal(2048UL, status.DataBlocksTotal);
        Assert.Equal(512UL, status.DataBlocksUsed); // exactly the 32 MiB written
    }

    private static async Task<(ToolResult Result, TimeSpan Elapsed)> TimedAsync(Func<Task<ToolResult>> run)
    {
        var clock = Stopwatch.StartNew();
        var r = await run();
        return (r, clock.Elapsed);
    }
}
