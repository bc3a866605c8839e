using BackupAppliance.TestSupport;

namespace BackupAppliance.EndToEnd.Tests;

/// <summary>
/// Bad input to the backup commands of the real CLI: a clear error naming what was wrong, exit 1,
/// nothing on stdout, and nothing written (no image file, no receiver pool).
/// </summary>
public sealed class CliInputTests : IDisposable
{
    private readonly TempDir _dir = Tool.TempDir();

    public CliInputTests()
    {
        File.WriteAllText(AgentConfig, """
            {
              "agent": "host1", "pool": "pool", "control_socket": "agent.sock",
              "volumes": [ { "name": "disk" }, { "name": "db" } ]
            }
            """);
        File.WriteAllText(ReceiverConfig, """{ "pool": "replica" }""");
    }

    private string AgentConfig => _dir.File("agent.json");
    private string ReceiverConfig => _dir.File("receiver.json");
    private string Image => _dir.File("restored.raw");

    [Fact]
    public void BackupNowOfAVolumeNotConfiguredNamesItAndTheConfiguredOnes()
    {
        var r = Refused(Tool.Bapp("backup", "now", "mail", "--config", AgentConfig));
        Assert.Equal($"error: volume 'mail' is not in {AgentConfig} (volumes: disk, db)\n", r.Stderr);
    }

    [Fact]
    public void BackupNowWithoutAgentSaysNoDaemonListens()
    {
        var r = Refused(Tool.Bapp("backup", "now", "disk", "--config", AgentConfig));
        Assert.Equal($"error: no daemon is listening on {_dir.File("agent.sock")} (is it running, and is this its configuration?)\n", r.Stderr);
    }

    [Fact]
    public void BackupNowWithABrokenConfigNamesTheOption()
    {
        File.WriteAllText(AgentConfig, """{ "agent": "host1", "pool": "pool", "volumes": [ { "name": "disk" } ], "zstd_level": 0 }""");
        var r = Refused(Tool.Bapp("backup", "now", "disk", "--config", AgentConfig));
        Assert.Equal($"error: config {AgentConfig}: option 'zstd_level': must be 1 to 19, or -1 to -20 for zstd's fast levels (is 0)\n", r.Stderr);
    }

    [Fact]
    public void BackupNowWithAMissingConfigNamesTheFile()
    {
        string missing = _dir.File("nowhere.json");
        var r = Refused(Tool.Bapp("backup", "now", "disk", "--config", missing));
        Assert.StartsWith($"error: config {missing}: cannot be read: ", r.Stderr);
    }

    [Theory]
    [InlineData("disk")]
    [InlineData("disk@")]
    [InlineData("@latest")]
    public void RestoreWithoutAPointIsRefused(string spec)
    {
        var r = Refused(Tool.Bapp("restore", spec, "--to", Image, "--config", ReceiverConfig));
        Assert.Equal($"error: '{spec}' is not VOLUME@POINT (for example disk@latest or disk@20261121T101500Z)\n", r.Stderr);
    }

    [Fact]
    public void RestoreFromAReceiverThatNeverRanSaysSo()
    {
        var r = Refused(Tool.Bapp("restore", "disk@latest", "--to", Image, "--config", ReceiverConfig));
        Assert.Equal($"error: the receiver's pool {_dir.File("replica")} does not exist yet (start the receiver once: `bapp receiver run --config {ReceiverConfig}`)\n", r.Stderr);
    }

    [Fact]
    public void BackupListOfAReceiverThatNeverRanSaysSo()
    {
        var r = Refused(Tool.Bapp("backup", "list", "disk", "--config", ReceiverConfig));
        Assert.Equal($"error: the receiver's pool {_dir.File("replica")} does not exist yet (start the receiver once: `bapp receiver run --config {ReceiverConfig}`)\n", r.Stderr);
    }

    /// <summary>Exit 1, nothing on stdout, and the folder holds only the two config files.</summary>
    private Tool.Result Refused(Tool.Result r)
    {
        Assert.True(r.ExitCode == 1, $"exit {r.ExitCode}: {r.Stderr}{r.Stdout}");
        Assert.Equal("", r.Stdout);
        var entries = Directory.EnumerateFileSystemEntries(_dir.Path, "*", SearchOption.AllDirectories).Select(Path.GetFileName).Order(StringComparer.Ordinal);
        Assert.Equal(["agent.json", "receiver.json"], entries);
        return r;
    }

    public void Dispose() => _dir.Dispose();
}
