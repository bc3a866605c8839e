using System.Text.Json.Nodes;
using BackupAppliance.Nbd;
using BackupAppliance.Thin.Tests.Support;

namespace BackupAppliance.Thin.Tests;

/// <summary>A served pool is managed through its control socket: status while in use, and an online resize that wakes waiting writes.</summary>
public class ServeControlTests
{
    [Fact]
    public async Task OnlineResizeCompletesAWriteWaitingForSpace()
    {
        using var dir = Tool.TempDir();
        string pool = dir.File("pool");
        Assert.Equal(0, Tool.Bapp("pool", "create", "--pool", pool, "--data-size", "4M", "--no-space-timeout", "120").ExitCode);
        Assert.Equal(0, Tool.Bapp("vol", "create", "--pool", pool, "v", "--size", "64M").ExitCode);
        using var server = ServeProcess.Start(pool);
        await using var c = await NbdClient.ConnectAsync("127.0.0.1", server.Port, "v", default);
        var data = new byte[16 << 20];
        new Random(5).NextBytes(data);
        var write = c.WriteAsync(0, data, fua: true, default);

        // The write is parked: the pool reports it is out of data space, in use by the server.
        JsonObject status;
        do
        {
            await Task.Delay(50);
            var r = Tool.Bapp("pool", "status", "--pool", pool, "--json");
            Assert.True(r.ExitCode == 0, r.Stderr);
            status = JsonNode.Parse(r.Stdout)!.AsObject();
        }
        while (status["mode"]!.GetValue<string>() != "OutOfDataSpace");
        Assert.Equal(server.Pid, status["servedBy"]!.GetValue<int>());
        Assert.False(write.IsCompleted);
        var human = Tool.Bapp("pool", "status", "--pool", pool);
        Assert.Contains("mode:           out-of-data-space", human.Stdout);
        Assert.Contains("WARNING: below the low-water mark", human.Stdout);

        // Opening the pool from another process is refused; resizing goes through the server.
        var create = Tool.Bapp("vol", "create", "--pool", pool, "w", "--size", "1M");
        Assert.Equal(1, create.ExitCode);
        Assert.Contains("in use by another process", create.Stderr);
        var resize = Tool.Bapp("pool", "resize", "--pool", pool, "--data-size", "64M");
        Assert.True(resize.ExitCode == 0, resize.Stderr);
        Assert.Contains($"in use by process {server.Pid}", resize.Stdout);
        Assert.Contains("mode write", resize.Stdout);

        await write.WaitAsync(TimeSpan.FromSeconds(60));
        var back = new byte[data.Length];
        await c.ReadAsync(0, back, default);
        Assert.Equal(data, back);
        await c.DisposeAsync();
        server.Stop();
        Oracle.AssertCheckPasses(Path.Combine(pool, "metadata"), "after an online resize");
        Assert.False(File.Exists(Path.Combine(pool, "control.sock")));
    }
}
