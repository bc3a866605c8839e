namespace BackupAppliance.Integration.Tests.Support;

/// <summary>qemu-io against an export; every <c>-c</c> command in one connection.</summary>
public static class QemuIo
{
    public static Task<ToolResult> RunAsync(string uri, params string[] commands) =>
        Tool.RunAsync("qemu-io", ["-f", "raw", uri, .. commands.SelectMany(c => new[] { "-c", c })]);

    /// <summary>Opened read-only (<c>-r</c>): for snapshot exports.</summary>
    public static Task<ToolResult> ReadOnlyAsync(string uri, params string[] commands) =>
        Tool.RunAsync("qemu-io", ["-r", "-f", "raw", uri, .. commands.SelectMany(c => new[] { "-c", c })]);

    /// <summary>
    /// Every command succeeded and every pattern read verified: exit 0, no failure message, and
    /// each expected line (e.g. "read 4194304/4194304 bytes at offset 1048576") is in the output.
    /// </summary>
    public static void AssertVerified(ToolResult r, params string[] expectedLines)
    {
        Assert.True(r.ExitCode == 0, $"qemu-io failed:\n{r}");
        Assert.False(r.Output.Contains("Pattern verification failed"), $"qemu-io pattern mismatch:\n{r}");
        Assert.False(r.Output.Contains("failed:"), $"a qemu-io command failed:\n{r}");
        var lines = r.Stdout.Split('\n').Select(l => l.Trim()).ToHashSet();
        foreach (var line in expectedLines)
            Assert.True(lines.Contains(line), $"qemu-io output lacks '{line}':\n{r}");
    }

    public static string Wrote(long offset, long length) => $"wrote {length}/{length} bytes at offset {offset}";

    public static string Read(long offset, long length) => $"read {length}/{length} bytes at offset {offset}";
}
