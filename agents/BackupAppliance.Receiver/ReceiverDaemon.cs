using System.Text.Json.Nodes;
using BackupAppliance.Hosting;
using BackupAppliance.Replica;
using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Thin.Pool;
using BackupAppliance.Transport.Nats;

namespace BackupAppliance.Receiver;

/// <summary>
/// The receiver daemon: holds its own pool of backup points, receives backups over NATS
/// (<see cref="BackupReceiver"/>), and answers `bapp backup list` and `bapp restore` on its control
/// socket. Runs until cancelled; an unfinished backup stays staged and resumes when its agent offers
/// it again.
/// </summary>
public static class ReceiverDaemon
{
    public static async Task RunAsync(ReceiverConfig config, DaemonLog log, Action<string>? ready, CancellationToken cancellationToken)
    {
        string file = config.File ?? "(receiver config)";
        var natsOptions = config.Nats.ToOptions(file, $"bapp-receiver-{config.Name}");
        await using var store = ReplicaStore.Exists(config.PoolPath)
            ? ReplicaStore.Open(config.PoolPath, config.StoreOptions())
            : Create(config, config.StoreOptions(), log);
        if (store.PoolReclaimNote is { } reclaimed)
            log.Warn(reclaimed);
        await using var transport = await NatsConnect.ConnectAsync(natsOptions, log, cancellationToken).ConfigureAwait(false);
        var receiver = new BackupReceiver(transport, store, new ReceiverOptions
        {
            CreditWindow = config.CreditFrames,
            DurableEvery = config.DurableEveryFrames,
            Log = log.Info,
        });
        await receiver.StartAsync(cancellationToken).ConfigureAwait(false);
        using var stopping = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var control = new ControlServer(config.ControlSocketPath, (r, ct) => ReceiverControl.HandleAsync(store, receiver, r, ct), m => log.Error(m));
        var controlTask = control.RunAsync(stopping.Token);
        log.Info($"receiver {config.Name}: pool {config.PoolPath}, agents {(config.Agents is null ? "any" : string.Join(", ", config.Agents))}; control socket {control.SocketPath}");
        ready?.Invoke($"receiver {config.Name} ready control={control.SocketPath}");
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        log.Info("stopping: unfinished backups stay staged; committing the pool");
        stopping.Cancel();
        await receiver.DisposeAsync().ConfigureAwait(false);
        await controlTask.ConfigureAwait(false);
    }

    private static ReplicaStore Create(ReceiverConfig config, ReplicaStoreOptions options, DaemonLog log)
    {
        // An agent cannot wait for someone to grow the pool: a full pool refuses at once (NoSpace), and the backup says so.
        log.Info($"making the receiver's pool in {config.PoolPath}: {config.PoolDataSize} of data, {config.PoolBlockSize} blocks");
        return ReplicaStore.Create(config.PoolPath, config.PoolDataBytes, new PoolSettings { DataBlockSize = config.PoolBlockBytes, ErrorIfNoSpace = true }, options);
    }
}
