using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using BackupAppliance.Hosting;
using BackupAppliance.Receiver;
using BackupAppliance.Replica;
using BackupAppliance.TestSupport;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.EndToEnd.Tests;

/// <summary>
/// The daemons' control socket (<see cref="ControlServer"/> / <see cref="ControlClient"/>) on a real
/// Unix socket: malformed requests get one error line, progress lines come before the result, and a
/// client that hangs up cancels the operation.
/// </summary>
public sealed class ControlSocketTests : IAsyncLifetime
{
    private readonly TempDir _dir = Tool.TempDir();
    private readonly CancellationTokenSource _stop = new();
    private readonly List<string> _log = [];
    private Task? _serving;

    private string SocketPath => _dir.File("c.sock");

    private void Serve(Func<ControlRequest, CancellationToken, Task<JsonObject>> handle)
    {
        var server = new ControlServer(SocketPath, handle, m => { lock (_log) _log.Add(m); });
        _serving = server.RunAsync(_stop.Token); // bound and listening when this returns
        Assert.True(File.Exists(SocketPath));
    }

    [Theory]
    [InlineData("{\"volume\":\"disk\"}", "the request has no \"op\" (a string naming the operation)")]
    [InlineData("{\"op\":42}", "the request has no \"op\" (a string naming the operation)")]
    [InlineData("[\"backup\"]", "a request is one JSON object")]
    public async Task MalformedRequestGetsOneErrorLine(string request, string error)
    {
        bool called = false;
        Serve((_, _) => { called = true; return Task.FromResult(new JsonObject()); });
        var lines = await ExchangeAsync(request);
        Assert.Equal([new JsonObject { ["error"] = error }.ToJsonString()], lines);
        Assert.False(called);
    }

    [Fact]
    public async Task BadJsonGetsAnErrorLineSayingSo()
    {
        Serve((_, _) => Task.FromResult(new JsonObject()));
        var lines = await ExchangeAsync("{op: backup");
        var reply = Assert.Single(lines);
        Assert.StartsWith("the request is not JSON: ", JsonNode.Parse(reply)!["error"]!.GetValue<string>());
    }

    [Fact]
    public async Task UnknownOpOfTheReceiverIsAnErrorNamingTheKnownOnes()
    {
        await using var store = ReplicaStore.Create(_dir.File("replica"), 64L << 20, new PoolSettings { DataBlockSize = 65536 });
        Serve((r, ct) => ReceiverControl.HandleAsync(store, null, r, ct));
        var reply = Assert.Single(await ExchangeAsync("{\"op\":\"explode\"}"));
        Assert.Equal("unknown op 'explode' (list, restore, status)", JsonNode.Parse(reply)!["error"]!.GetValue<string>());
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            ControlClient.AskAsync(SocketPath, new JsonObject { ["op"] = "list", ["volume"] = "disk" }, null, CancellationToken.None));
        Assert.Equal("this receiver holds no backups of a volume named 'disk'", e.Message);
    }

    [Fact]
    public async Task ProgressLinesArriveBeforeTheResult()
    {
        Serve((r, _) =>
        {
            for (int i = 1; i <= 3; i++)
                r.Report(new JsonObject { ["done"] = i, ["total"] = 3 });
            return Task.FromResult(new JsonObject { ["op"] = r.Op, ["volume"] = r.Text("volume") });
        });
        var lines = await ExchangeAsync("{\"op\":\"backup\",\"volume\":\"disk\"}");
        Assert.Equal(
        [
            "{\"progress\":{\"done\":1,\"total\":3}}",
            "{\"progress\":{\"done\":2,\"total\":3}}",
            "{\"progress\":{\"done\":3,\"total\":3}}",
            "{\"op\":\"backup\",\"volume\":\"disk\"}",
        ], lines);

        // The client hands progress to its callback and returns the last line.
        var seen = new List<long>();
        var result = await ControlClient.AskAsync(SocketPath, new JsonObject { ["op"] = "backup", ["volume"] = "db" },
            p => seen.Add(p["done"]!.GetValue<long>()), CancellationToken.None);
        Assert.Equal([1, 2, 3], seen);
        Assert.Equal("db", result["volume"]!.GetValue<string>());
    }

    [Fact]
    public async Task MissingFieldIsAnErrorTheClientThrows()
    {
        Serve((r, _) => Task.FromResult(new JsonObject { ["volume"] = r.Text("volume") }));
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            ControlClient.AskAsync(SocketPath, new JsonObject { ["op"] = "backup" }, null, CancellationToken.None));
        Assert.Equal("the backup request has no \"volume\"", e.Message);
    }

    [Fact]
    public async Task ClientHangingUpCancelsTheHandler()
    {
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        Serve(async (_, ct) =>
        {
            started.SetResult();
            try { await Task.Delay(Timeout.Infinite, ct); }
            catch (OperationCanceledException) { cancelled.SetResult(ct.IsCancellationRequested); throw; }
            return new JsonObject();
        });
        using (var s = await ConnectAsync())
        {
            await s.SendAsync(Encoding.UTF8.GetBytes("{\"op\":\"backup\",\"volume\":\"disk\"}\n"));
            await started.Task.WaitAsync(TimeSpan.FromMinutes(1));
        }
        // Only a hang guard: without the cancellation the handler would wait for ever.
        Assert.True(await cancelled.Task.WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Empty(_log);
    }

    [Fact]
    public async Task NoServerIsDaemonNotRunning()
    {
        var e = await Assert.ThrowsAsync<DaemonNotRunningException>(() =>
            ControlClient.AskAsync(SocketPath, new JsonObject { ["op"] = "status" }, null, CancellationToken.None));
        Assert.Equal(SocketPath, e.SocketPath);
        // A stale socket file of a killed daemon: nothing accepts on it.
        using (var stale = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
            stale.Bind(new UnixDomainSocketEndPoint(SocketPath));
        await Assert.ThrowsAsync<DaemonNotRunningException>(() =>
            ControlClient.AskAsync(SocketPath, new JsonObject { ["op"] = "status" }, null, CancellationToken.None));
    }

    private async Task<Socket> ConnectAsync()
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await s.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath));
        return s;
    }

    /// <summary>Sends one raw request line and reads every reply line until the server closes.</summary>
    private async Task<List<string>> ExchangeAsync(string request)
    {
        using var s = await ConnectAsync();
        await s.SendAsync(Encoding.UTF8.GetBytes(request + "\n"));
        await using var stream = new NetworkStream(s, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var lines = new List<string>();
        while (await reader.ReadLineAsync().WaitAsync(TimeSpan.FromMinutes(1)) is { } line)
            lines.Add(line);
        return lines;
    }

    public Task InitializeAsync() => Task.CompletedTask;

    // xUnit 2 disposes a test class through IAsyncLifetime or IDisposable, not IAsyncDisposable: this
    // folder (and the socket in it) was left behind by every test.
    public async Task DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_serving is not null)
            await _serving;
        _stop.Dispose();
        _dir.Dispose();
    }
}
