using System.Text.Json.Nodes;
using BackupAppliance.ChangeTracking;
using BackupAppliance.Hosting;
using BackupAppliance.Nbd;
using BackupAppliance.Replication.Sending;

namespace BackupAppliance.Agent;

/// <summary>
/// The agent daemon: holds the pool, serves its volumes over NBD (writes tracked by era), connects
/// to NATS and backs volumes up when asked on its control socket (<c>bapp backup now</c>). Runs
/// until cancelled; then stops serving, lets a running backup stop where it is (it resumes at the
/// next start) and commits the pool.
/// </summary>
public static class AgentDaemon
{
    /// <param name="alongside">Something else to run while the pool is held (the CLI serves the pool's own control socket).</param>
    /// <param name="ready">Called once everything listens, with a line for whoever started the daemon.</param>
    public static async Task RunAsync(AgentConfig config, DaemonLog log, Func<TrackedPool, CancellationToken, Task>? alongside, Action<string>? ready, CancellationToken cancellationToken)
    {
        string file = config.File ?? "(agent config)";
        var natsOptions = config.Nats.ToOptions(file, $"bapp-agent-{config.Agent}");
        if (!File.Exists(Path.Combine(config.PoolPath, BackupAppliance.Thin.Pool.PoolSettings.FileName)))
            throw new ConfigException(file, "pool", $"{config.PoolPath} is not a pool (make one with `bapp pool create --pool {config.PoolPath} --data-size SIZE`)");
        await using var pool = TrackedPool.Open(config.PoolPath);
        pool.Pool.Warning += m => log.Warn(m);
        if (pool.Pool.ReclaimNote is { } reclaimed)
            log.Warn(reclaimed);
        // Configuration and pool problems are reported at once, not after NATS comes up (which may be never).
        AgentService.CheckVolumes(config, pool);
        await using var transport = await NatsConnect.ConnectAsync(natsOptions, log, cancellationToken).ConfigureAwait(false);
        var service = new AgentService(config, pool, transport, log);

        // "none" and no Unix socket: nothing is served (a server with no endpoint cannot be made).
        NbdServer? server = config.NbdEndPoint is null && config.NbdUnix is null ? null : new NbdServer(new TrackedPoolExports(pool), new NbdServerOptions
        {
            TcpEndPoint = config.NbdEndPoint,
            UnixSocketPath = config.NbdUnix,
            ConnectionError = e => log.Warn($"NBD connection: {e.Message}"),
        });
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var tasks = new List<Task>();
        if (server is not null)
            await server.StartAsync(cancellationToken).ConfigureAwait(false);
        var control = new ControlServer(config.ControlSocketPath, (r, ct) => HandleAsync(service, config, r, ct), m => log.Error(m));
        tasks.Add(control.RunAsync(stopping.Token));
        if (alongside is not null)
            tasks.Add(alongside(pool, stopping.Token));
        string nbd = string.Join(" and ", new[] { server?.TcpEndPoint?.ToString(), server?.UnixSocketPath }.Where(s => s is not null));
        log.Info($"agent {config.Agent}: pool {config.PoolPath}, volumes {string.Join(", ", config.Volumes.Select(v => v.Name))}; NBD on {(nbd.Length > 0 ? nbd : "nothing")}; control socket {control.SocketPath}");
        ready?.Invoke($"agent {config.Agent} ready nbd={server?.TcpEndPoint?.ToString() ?? "none"} control={control.SocketPath}");
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        log.Info("stopping: closing NBD connections, cancelling backups, committing the pool");
        stopping.Cancel();
        if (server is not null)
        {
            await server.StopAsync(CancellationToken.None).ConfigureAwait(false);
            await server.DisposeAsync().ConfigureAwait(false);
        }
        try { await Task.WhenAll(tasks).ConfigureAwait(false); }
        catch (OperationCanceledException) { }
    }

    private static async Task<JsonObject> HandleAsync(AgentService service, AgentConfig config, ControlRequest request, CancellationToken cancellationToken)
    {
        switch (request.Op)
        {
            case "backup":
            {
                string volume = request.Text("volume");
                var r = await service.BackupAsync(volume, new ControlProgress(request), cancellationToken).ConfigureAwait(false);
                return new JsonObject
                {
                    ["volume"] = volume, ["point"] = r.Point, ["digest"] = Convert.ToHexStringLower(r.Digest),
                    ["changed_bytes"] = r.ChangedBytes, ["data_bytes"] = r.DataBytes, ["wire_bytes"] = r.WireBytes,
                    ["seconds"] = r.Elapsed.TotalSeconds, ["resumed"] = r.Resumed,
                    ["timings"] = new JsonObject
                    {
                        ["framing_seconds"] = r.Timings.Framing.TotalSeconds,
                        ["publishing_seconds"] = r.Timings.Publishing.TotalSeconds,
                        ["waiting_for_receiver_seconds"] = r.Timings.WaitingForReceiver.TotalSeconds,
                        ["committing_seconds"] = r.Timings.Committing.TotalSeconds,
                    },
                };
            }
            case "status":
            {
                var volumes = new JsonArray();
                foreach (var v in config.Volumes)
                {
                    var s = service.StatusOf(v.Name);
                    volumes.Add(new JsonObject
                    {
                        ["volume"] = v.Name, ["base_point"] = s.BasePoint, ["base_era"] = s.BaseEra,
                        ["base_time"] = s.BaseTime?.ToString("O"), ["pending"] = s.Pending?.Snapshot,
                    });
                }
                return new JsonObject { ["agent"] = config.Agent, ["volumes"] = volumes };
            }
            default:
                throw new FormatException($"unknown op '{request.Op}' (backup, status)");
        }
    }

    /// <summary>Sends the sender's progress as control lines, at most about 5 a second (and always the last).</summary>
    private sealed class ControlProgress(ControlRequest request) : IProgress<BackupProgress>
    {
        private long _lastTicks;

        public void Report(BackupProgress value)
        {
            long now = Environment.TickCount64;
            if (now - Interlocked.Read(ref _lastTicks) < 200 && value.BytesDone < value.BytesTotal)
                return;
            Interlocked.Exchange(ref _lastTicks, now);
            // done/total are the data bytes (the work: read, hash, compress) when there are any; a
            // full backup's unmapped and zero ranges pass in no time and would skew the rate and ETA.
            bool data = value.DataTotal > 0;
            request.Report(new JsonObject
            {
                ["done"] = data ? value.DataDone : value.BytesDone, ["total"] = data ? value.DataTotal : value.BytesTotal,
                ["changed_done"] = value.BytesDone, ["changed_total"] = value.BytesTotal, ["sent"] = value.BytesSent,
                ["wire"] = value.WireBytes, ["phase"] = value.Phase,
            });
        }
    }
}
