using System.Text.Json;
using System.Text.Json.Nodes;
using BackupAppliance.ChangeTracking;
using BackupAppliance.Cli.Commands.Pool;
using BackupAppliance.Hosting;
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
    public static Task ServeAsync(TrackedPool pool, TextWriter log, CancellationToken cancellationToken) =>
        new ControlServer(SocketPath(pool.Directory), (r, ct) => HandleAsync(pool, r.Body, r.Op, log, ct), log.WriteLine).RunAsync(cancellationToken);

    private static async Task<JsonObject> HandleAsync(TrackedPool pool, JsonObject req, string op, TextWriter log, CancellationToken cancellationToken) => op switch
    {
        "status" => JsonNode.Parse(StatusJson(pool.Pool))!.AsObject(),
        "resize" => JsonNode.Parse(Resize(pool.Pool, req, log))!.AsObject(),
        "snapshot" => await Snapshot(pool, req, log, cancellationToken),
        "volume-status" => VolumeJson.Status(pool.Status(Text(req, "volume"))),
        "changes" => await Changes(pool, req, cancellationToken),
        _ => throw new FormatException($"unknown op '{op}' (status, resize, snapshot, volume-status, changes)"),
    };

    private static string Text(JsonObject req, string field) =>
        req[field]?.GetValue<string>() ?? throw new FormatException($"the request has no \"{field}\"");

    private static async Task<JsonObject> Snapshot(TrackedPool pool, JsonObject req, TextWriter log, CancellationToken cancellationToken)
    {
        var snap = await pool.SnapshotAsync(Text(req, "volume"), Text(req, "snapshot"), cancellationToken);
        log.WriteLine($"snapshot {snap.Name} of {snap.SnapshotOf}" + (snap.ChangeEpoch is { } e ? $" at era {e}" : ""));
        return new JsonObject { ["name"] = snap.Name, ["deviceId"] = snap.DeviceId, ["era"] = snap.ChangeEpoch };
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
        try
        {
            return ControlClient.AskAsync(SocketPath(poolDir), request, null, CancellationToken.None).GetAwaiter().GetResult();
        }
        catch (DaemonNotRunningException)
        {
            return null;
        }
        catch (InvalidOperationException e)
        {
            throw new InvalidOperationException($"the process serving {poolDir}: {e.Message}", e);
        }
    }
}
