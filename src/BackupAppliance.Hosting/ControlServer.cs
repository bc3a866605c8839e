using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace BackupAppliance.Hosting;

/// <summary>
/// A daemon's control socket (a Unix socket only local users with access to its folder reach). One
/// request per connection: a JSON object on one line with an <c>"op"</c>. The reply is one or more
/// JSON lines: progress lines (<c>{"progress": …}</c>) while the operation runs, and a last line
/// that is either the result or <c>{"error": "…"}</c>. A client that goes away cancels its operation.
/// </summary>
public sealed class ControlServer
{
    private readonly string _path;
    private readonly Func<ControlRequest, CancellationToken, Task<JsonObject>> _handle;
    private readonly Action<string> _log;

    public ControlServer(string path, Func<ControlRequest, CancellationToken, Task<JsonObject>> handle, Action<string> log)
    {
        _path = Path.GetFullPath(path);
        _handle = handle;
        _log = log;
    }

    public string SocketPath => _path;

    /// <summary>Binds the socket (replacing a stale one) and serves until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        File.Delete(_path); // a stale socket of a killed daemon; the caller holds the lock that proves it
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(_path));
        listener.Listen(16);
        var running = new List<Task>();
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                Socket conn;
                try { conn = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false); }
                catch (OperationCanceledException) { break; }
                running.RemoveAll(t => t.IsCompleted);
                running.Add(Task.Run(() => ServeAsync(conn, cancellationToken), CancellationToken.None));
            }
        }
        finally
        {
            File.Delete(_path);
            await Task.WhenAll(running).ConfigureAwait(false);
        }
    }

    private async Task ServeAsync(Socket conn, CancellationToken stopping)
    {
        using var owned = conn;
        await using var stream = new NetworkStream(conn, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { NewLine = "\n", AutoFlush = true };
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        // Progress lines are queued and written in order by one pump, so a handler reports without
        // waiting, and every line is out before the result.
        var progress = Channel.CreateUnbounded<JsonObject>(new UnboundedChannelOptions { SingleReader = true });
        var pump = Task.CompletedTask;
        JsonObject reply;
        try
        {
            string line = await reader.ReadLineAsync(cts.Token).AsTask().WaitAsync(TimeSpan.FromSeconds(10), cts.Token).ConfigureAwait(false)
                ?? throw new FormatException("the connection closed before a request");
            JsonObject request;
            try { request = JsonNode.Parse(line) as JsonObject ?? throw new FormatException("a request is one JSON object"); }
            catch (JsonException e) { throw new FormatException($"the request is not JSON: {e.Message}", e); }
            string op = request["op"] is JsonValue v && v.TryGetValue(out string? name) && name.Length > 0
                ? name
                : throw new FormatException("the request has no \"op\" (a string naming the operation)");
            // The client closing its end cancels the operation (it is waiting on nobody).
            _ = WatchHangUpAsync(reader, cts);
            pump = PumpProgressAsync(progress.Reader, writer, cts);
            reply = await _handle(new ControlRequest(op, request, line => progress.Writer.TryWrite(line)), cts.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            reply = new JsonObject { ["error"] = stopping.IsCancellationRequested ? "the daemon is stopping" : "cancelled" };
        }
        catch (Exception e) when (e is FormatException or JsonException or InvalidOperationException or ArgumentException
            or IOException or TimeoutException or KeyNotFoundException or BackupAppliance.Core.VolumeException)
        {
            // The request was wrong or the operation failed for a reason its text names: the answer says so.
            reply = new JsonObject { ["error"] = e.Message };
        }
        catch (Exception e)
        {
            _log($"control request failed: {e}");
            reply = new JsonObject { ["error"] = e.Message };
        }
        progress.Writer.TryComplete();
        await pump.ConfigureAwait(false);
        try { await writer.WriteLineAsync(reply.ToJsonString()).ConfigureAwait(false); }
        catch (IOException) { }
    }

    private static async Task PumpProgressAsync(ChannelReader<JsonObject> lines, StreamWriter writer, CancellationTokenSource cts)
    {
        await foreach (var line in lines.ReadAllAsync(CancellationToken.None).ConfigureAwait(false))
        {
            try { await writer.WriteLineAsync(new JsonObject { ["progress"] = line }.ToJsonString()).ConfigureAwait(false); }
            catch (IOException) { cts.Cancel(); }
        }
    }

    private static async Task WatchHangUpAsync(StreamReader reader, CancellationTokenSource cts)
    {
        try
        {
            while (await reader.ReadLineAsync(cts.Token).ConfigureAwait(false) is not null) { }
        }
        catch (Exception) { }
        if (!cts.IsCancellationRequested)
            cts.Cancel();
    }
}

/// <summary>
/// One control request: its op, the whole JSON object, and <paramref name="Report"/>, which sends a
/// progress line without blocking (lines go out in the order reported, all before the result).
/// </summary>
public sealed record ControlRequest(string Op, JsonObject Body, Action<JsonObject> Report)
{
    public string Text(string field) =>
        Body[field]?.GetValue<string>() ?? throw new FormatException($"the {Op} request has no \"{field}\"");
}
