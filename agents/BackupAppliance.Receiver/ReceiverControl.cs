using System.Text.Json.Nodes;
using BackupAppliance.Core;
using BackupAppliance.Hosting;
using BackupAppliance.Replica;
using BackupAppliance.Replication.Receiving;

namespace BackupAppliance.Receiver;

/// <summary>
/// What the receiver answers on its control socket (list, restore, status), and the client side:
/// <see cref="AskAsync"/> asks the running daemon, or opens the store itself when no daemon runs.
/// </summary>
public static class ReceiverControl
{
    public static async Task<JsonObject> AskAsync(ReceiverConfig config, JsonObject request, Action<JsonObject>? onProgress, CancellationToken cancellationToken)
    {
        try
        {
            return await ControlClient.AskAsync(config.ControlSocketPath, request, onProgress, cancellationToken).ConfigureAwait(false);
        }
        catch (DaemonNotRunningException)
        {
            if (!ReplicaStore.Exists(config.PoolPath))
                throw new InvalidOperationException($"the receiver's pool {config.PoolPath} does not exist yet (start the receiver once: `bapp receiver run --config {config.File}`)");
            await using var store = ReplicaStore.Open(config.PoolPath, config.StoreOptions());
            string op = request["op"]?.GetValue<string>() ?? "";
            var control = new ControlRequest(op, request, p => onProgress?.Invoke(p));
            return await HandleAsync(store, null, control, cancellationToken).ConfigureAwait(false);
        }
    }

    public static async Task<JsonObject> HandleAsync(ReplicaStore store, BackupReceiver? receiver, ControlRequest request, CancellationToken cancellationToken)
    {
        switch (request.Op)
        {
            case "list":
            {
                var (agent, volume) = Locate(store, request.Body["agent"]?.GetValue<string>(), request.Text("volume"));
                var points = new JsonArray();
                foreach (var p in store.ListPoints(agent, volume))
                    points.Add(PointJson(p));
                var staging = store.FindStaging(agent, volume);
                return new JsonObject
                {
                    ["agent"] = agent, ["volume"] = volume, ["points"] = points,
                    ["staging"] = staging is null ? null : new JsonObject
                    {
                        ["target"] = staging.Request.Target, ["base"] = staging.Request.BasePoint,
                        ["durable_position"] = staging.DurablePosition, ["size"] = staging.Request.Size,
                    },
                };
            }
            case "restore":
            {
                var (agent, volume) = Locate(store, request.Body["agent"]?.GetValue<string>(), request.Text("volume"));
                string to = request.Text("to");
                bool overwrite = request.Body["overwrite"]?.GetValue<bool>() ?? false;
                var point = store.FindPoint(agent, volume, request.Text("point"))
                    ?? throw new InvalidOperationException($"{agent}/{volume} has no point '{request.Text("point")}' (see `bapp backup list {volume}`)");
                long last = 0;
                var progress = new CallbackProgress<long>(done =>
                {
                    // A line every 64 MiB and at the end (reports come in order, from the restoring thread).
                    if (done - last < (64L << 20) && done < point.Size)
                        return;
                    last = done;
                    request.Report(new JsonObject { ["done"] = done, ["total"] = point.Size });
                });
                await store.RestoreAsync(agent, volume, point.Id, to, overwrite, progress, cancellationToken).ConfigureAwait(false);
                var reply = PointJson(point);
                reply["to"] = to;
                return reply;
            }
            case "status":
                return new JsonObject { ["running"] = receiver is not null, ["counters"] = receiver is null ? null : JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(receiver.Statistics)) };
            default:
                throw new FormatException($"unknown op '{request.Op}' (list, restore, status)");
        }
    }

    /// <summary>Finds the agent keeping <paramref name="volume"/> when none is named; refuses an ambiguous name.</summary>
    private static (string Agent, string Volume) Locate(ReplicaStore store, string? agent, string volume)
    {
        if (agent is not null)
            return (agent, volume);
        var agents = store.ListVolumes().Where(v => v.Volume == volume).Select(v => v.Agent).Distinct().ToList();
        return agents.Count switch
        {
            0 => throw new InvalidOperationException($"this receiver holds no backups of a volume named '{volume}'"),
            1 => (agents[0], volume),
            _ => throw new InvalidOperationException($"volume '{volume}' is backed up by several agents ({string.Join(", ", agents)}); name one with --agent"),
        };
    }

    public static JsonObject PointJson(ReplicaPoint p) => new()
    {
        ["agent"] = p.Agent, ["volume"] = p.Volume, ["point"] = p.Id, ["created"] = p.Created.ToString("O"),
        ["base"] = p.BasePoint, ["source_snapshot"] = p.SourceSnapshot, ["size"] = p.Size,
        ["block_size"] = p.BlockSize, ["changed_bytes"] = p.ChangedBytes, ["digest"] = Convert.ToHexStringLower(p.Digest),
    };
}
