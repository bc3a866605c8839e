using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BackupAppliance.ChangeTracking;
using BackupAppliance.Cli.Commands.Pool;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Cli.Commands.Serve;

/// <summary>
/// The control socket of a pool in use (<c>DIR/control.sock</c>): while `bapp serve` holds the pool's
/// lock, `bapp pool status`, `pool resize`, `vol snapshot`, `vol status` and `vol changes` ask it
/// instead of opening the pool. One JSON request per connection, one JSON reply. A resize here wakes
/// writes waiting for data space; a snapshot here is taken at an era checkpoint with writes held back.
/// </summary>
public static class PoolControl
{
    public const string SocketFile = "control.sock";

    public static string SocketPath(string poolDir) => Path.Combine(Path.GetFullPath(poolDir), SocketFile);

    /// <summary>Serves requests for <paramref name="pool"/> until cancelled.</summary>
    public static async Task ServeAsync(TrackedPool pool, TextWriter log, CancellationToken cancellationToken)
    {
        string path = SocketPath(pool.Directory);
        File.Delete(path); // a stale socket of a killed server; the pool lock proves no one else serves it
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(8);
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                Socket conn;
                try { conn = await listener.AcceptAsync(cancellationToken); }
                catch (OperationCanceledException) { break; }
                _ = Task.Run(() => HandleAsync(pool, conn, log, cancellationToken), CancellationToken.None);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static async Task HandleAsync(TrackedPool pool, Socket conn, TextWriter log, CancellationToken cancellationToken)
    {
        using var _ = conn;
        await using var stream = new NetworkStream(conn, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { NewLine = "\n" };
        string reply;
        try
        {
            string line = await reader.ReadLineAsync(cancellationToken).AsTask().WaitAsync(TimeSpan.FromSeconds(10), cancellationToken) ?? "";
            var req = JsonNode.Parse(line) as JsonObject ?? throw new FormatException("a request is one JSON object");
            string op = req["op"]?.GetValue<string>() ?? throw new FormatException("the request has no \"op\"");
            reply = op switch
            {
                "status" => StatusJson(pool.Pool),
                "resize" => Resize(pool.Pool, req, log),
                "snapshot" => await Snapshot(pool, req, log, cancellationToken),
                "volume-status" => VolumeJson.Status(pool.Status(Text(req, "volume"))).ToJsonString(),
                "changes" => (await Changes(pool, req, cancellationToken)).ToJsonString(),
                _ => throw new FormatException($"unknown op '{op}' (status, resize, snapshot, volume-status, changes)"),
            };
        }
        catch (Exception e) when (e is FormatException or JsonException or ArgumentException or InvalidOperationException or IOException or TimeoutException or KeyNotFoundException or BackupAppliance.Core.VolumeException)
        {
            reply = new JsonObject { ["error"] = e.Message }.ToJsonString();
        }
        await writer.WriteLineAsync(reply);
    }

    private static string Text(JsonObject req, string field) =>
        req[field]?.GetValue<string>() ?? throw new FormatException($"the request has no \"{field}\"");

    private static async Task<string> Snapshot(TrackedPool pool, JsonObject req, TextWriter log, CancellationToken cancellationToken)
    {
        var snap = await pool.SnapshotAsync(Text(req, "volume"), Text(req, "snapshot"), cancellationToken);
        log.WriteLine($"snapshot {snap.Name} of {snap.SnapshotOf}" + (snap.ChangeEpoch is { } e ? $" at era {e}" : ""));
        return new JsonObject { ["name"] = snap.Name, ["deviceId"] = snap.DeviceId, ["era"] = snap.ChangeEpoch }.ToJsonString();
    }

    private static async Task<JsonObject> Changes(TrackedPool pool, JsonObject req, CancellationToken cancellationToken)
    {
        string volume = Text(req, "volume");
        var set = req["sinceEra"] is { } era
            ? await pool.ChangesSinceEraAsync(volume, era.GetValue<uint>(), req["asOf"]?.GetValue<string>(), cancellationToken)
            : pool.ChangesSinceSnapshot(volume, Text(req, "sinceSnapshot"));
        return VolumeJson.Changes(set);
    }

    private static string Resize(ThinPool pool, JsonObject req, TextWriter log)
    {
        long? data = req["dataSize"]?.GetValue<long>(), meta = req["metadataSize"]?.GetValue<long>();
        pool.Resize(data, meta);
        log.WriteLine($"resized: data {data?.ToString() ?? "unchanged"} bytes, metadata {meta?.ToString() ?? "unchanged"} bytes");
        return StatusJson(pool);
    }

    public static string StatusJson(ThinPool pool)
    {
        var s = pool.Status();
        return JsonSerializer.Serialize(new
        {
            mode = s.Mode.ToString(), needsCheck = s.NeedsCheck, transactionId = s.TransactionId,
            dataBlockSize = s.DataBlockSize, dataBlocksUsed = s.DataBlocksUsed, dataBlocksTotal = s.DataBlocksTotal,
            metadataBlocksUsed = s.MetadataBlocksUsed, metadataBlocksTotal = s.MetadataBlocksTotal,
            belowLowWater = s.BelowLowWater, readOnlyReason = s.ReadOnlyReason, volumes = s.Volumes,
            lowWaterPercent = pool.Settings.LowWaterPercent, servedBy = Environment.ProcessId,
        });
    }

    /// <summary>Sends one request to a serving process; null when no one serves this pool.</summary>
    public static JsonObject? Ask(string poolDir, JsonObject request)
    {
        string path = SocketPath(poolDir);
        if (!File.Exists(path))
            return null;
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try { s.Connect(new UnixDomainSocketEndPoint(path)); }
        catch (SocketException) { return null; }
        using var stream = new NetworkStream(s, ownsSocket: false);
        using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { NewLine = "\n", AutoFlush = true };
        using var reader = new StreamReader(stream, Encoding.UTF8);
        writer.WriteLine(request.ToJsonString());
        string? line = reader.ReadLine();
        JsonObject? reply;
        try { reply = string.IsNullOrEmpty(line) ? null : JsonNode.Parse(line) as JsonObject; }
        catch (JsonException e) { throw new IOException($"the process serving {poolDir} sent a malformed reply: {e.Message}", e); }
        if (reply is null)
            throw new IOException($"the process serving {poolDir} sent no reply (did it stop?)");
        if (reply["error"] is { } error)
            throw new InvalidOperationException($"the process serving {poolDir}: {error.GetValue<string>()}");
        return reply;
    }
}
