using BackupAppliance.Thin.Kernel;

namespace BackupAppliance.Thin.Tests;

/// <summary>The thin-pool status line in the kernel's format (thin-provisioning.rst, "Status"), parsed strictly.</summary>
public class ThinPoolStatusTests
{
    private const string Pool = "vg-pool-tpool";

    [Fact]
    public void ParsesEveryFieldOfAKernelLine()
    {
        var s = ThinPoolStatus.Parse(Pool, "0 41943040 thin-pool 17 210/4161600 1024/163840 8 rw discard_passdown queue_if_no_space - 4096\n");
        Assert.Equal(new ThinPoolStatus(17, 210, 4161600, 1024, 163840, 8, KernelPoolMode.ReadWrite,
            DiscardPassdown: true, ErrorIfNoSpace: false, NeedsCheck: false, MetadataLowWatermark: 4096), s);
        Assert.Equal("17 210/4161600 1024/163840 8 rw discard_passdown queue_if_no_space - 4096", s.Format());
    }

    [Theory]
    // Kernels before 4.19 print no low watermark; '-' means no held root.
    [InlineData("0 2097152 thin-pool 0 11/4096 0/1024 - out_of_data_space no_discard_passdown error_if_no_space needs_check",
        0UL, null, KernelPoolMode.OutOfDataSpace, false, true, true, null)]
    [InlineData("0 2097152 thin-pool 18446744073709551615 4096/4096 1024/1024 4095 ro discard_passdown queue_if_no_space needs_check 0",
        ulong.MaxValue, 4095UL, KernelPoolMode.ReadOnly, true, false, true, 0UL)]
    public void ParsesOlderKernelsAndEdgeValues(string line, ulong trans, ulong? held, KernelPoolMode mode, bool passdown,
        bool errorIfNoSpace, bool needsCheck, ulong? lowWater)
    {
        var s = ThinPoolStatus.Parse(Pool, line);
        Assert.Equal((trans, held, mode, passdown, errorIfNoSpace, needsCheck, lowWater),
            (s.TransactionId, s.HeldRoot, s.Mode, s.DiscardPassdown, s.ErrorIfNoSpace, s.NeedsCheck, s.MetadataLowWatermark));
        Assert.Equal(line[(line.IndexOf("thin-pool ", StringComparison.Ordinal) + 10)..], s.Format());
    }

    [Theory]
    [InlineData("0 2097152 thin-pool x3 11/4096 0/1024 - rw discard_passdown queue_if_no_space - 1024", "'transaction id' is 'x3'")]
    [InlineData("0 2097152 thin-pool -3 11/4096 0/1024 - rw discard_passdown queue_if_no_space - 1024", "'transaction id' is '-3'")]
    [InlineData("0 2097152 thin-pool 3 11-4096 0/1024 - rw discard_passdown queue_if_no_space - 1024", "'used/total metadata blocks' is '11-4096'")]
    [InlineData("0 2097152 thin-pool 3 11/4096 x/1024 - rw discard_passdown queue_if_no_space - 1024", "'used/total data blocks' is 'x'")]
    [InlineData("0 2097152 thin-pool 3 11/4096 2000/1024 - rw discard_passdown queue_if_no_space - 1024", "'used/total data blocks' is '2000/1024': more used")]
    [InlineData("0 2097152 thin-pool 3 11/4096 0/1024 abc rw discard_passdown queue_if_no_space - 1024", "'held metadata root' is 'abc'")]
    [InlineData("0 2097152 thin-pool 3 11/4096 0/1024 0 rw discard_passdown queue_if_no_space - 1024", "'held metadata root' is 0")]
    [InlineData("0 2097152 thin-pool 3 11/4096 0/1024 - rx discard_passdown queue_if_no_space - 1024", "'mode' is 'rx'")]
    [InlineData("0 2097152 thin-pool 3 11/4096 0/1024 - rw discard queue_if_no_space - 1024", "'discard passdown' is 'discard'")]
    [InlineData("0 2097152 thin-pool 3 11/4096 0/1024 - rw discard_passdown queue - 1024", "'no-space policy' is 'queue'")]
    [InlineData("0 2097152 thin-pool 3 11/4096 0/1024 - rw discard_passdown queue_if_no_space yes 1024", "'needs_check' is 'yes'")]
    [InlineData("0 2097152 thin-pool 3 11/4096 0/1024 - rw discard_passdown queue_if_no_space - 1k", "'metadata low watermark' is '1k'")]
    [InlineData("0 2097152 thin-pool 3 11/4096 0/1024 - rw discard_passdown queue_if_no_space", "'needs_check' is missing")]
    [InlineData("0 2097152 thin-pool 3 11/4096", "'used/total data blocks' is missing")]
    [InlineData("0 2097152 thin-pool 3 11/4096 0/1024 - rw discard_passdown queue_if_no_space - 1024 extra", "1 unexpected field(s) after 'metadata low watermark', starting at 'extra'")]
    [InlineData("x 2097152 thin-pool 3 11/4096 0/1024 - rw discard_passdown queue_if_no_space - 1024", "'start sector' is 'x'")]
    [InlineData("0 thin-pool", "starts with <start> <length> <target type>")]
    [InlineData("", "the status is empty")]
    [InlineData("0 100 thin-pool 3 11/4096 0/1024 - rw discard_passdown queue_if_no_space - 1024\n100 100 thin-pool 3 11/4096 0/1024 - rw discard_passdown queue_if_no_space - 1024", "2 lines")]
    public void AMalformedLineIsRefusedNamingTheField(string line, string problem)
    {
        var e = Assert.Throws<KernelPoolException>(() => ThinPoolStatus.Parse(Pool, line));
        Assert.Equal(KernelPoolError.MalformedStatus, e.Error);
        Assert.Contains(problem, e.Message);
        Assert.Contains(Pool, e.Message);
    }

    [Theory]
    [InlineData("0 2097152 thin-pool Fail", KernelPoolError.PoolFailed, "has failed")]
    [InlineData("0 2097152 thin-pool Error", KernelPoolError.PoolFailed, "could not report its status")]
    [InlineData("0 2097152 linear", KernelPoolError.NotAThinPool, "'linear' target")]
    [InlineData("0 2097152 thin 1024 2097151", KernelPoolError.NotAThinPool, "-tpool")]
    public void FailedPoolsAndOtherTargetsAreTypedErrors(string line, KernelPoolError error, string text)
    {
        var e = Assert.Throws<KernelPoolException>(() => ThinPoolStatus.Parse(Pool, line));
        Assert.Equal(error, e.Error);
        Assert.Contains(text, e.Message);
    }
}
