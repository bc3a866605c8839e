using BackupAppliance.ChangeTracking;
using BackupAppliance.Hosting;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Sending;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Agent;

/// <summary>
/// Backs up the agent's volumes to the receiver, one backup per volume at a time:
/// snapshot (or the snapshot of the backup under way, after a restart) → changed ranges → sender →
/// on the receiver's commit acknowledgement: the point becomes the base, the snapshot is released.
/// </summary>
public sealed class AgentService
{
    private const string SnapshotPrefix = ".bapp-";
    private readonly AgentConfig _config;
    private readonly TrackedPool _pool;
    private readonly ITransport _transport;
    private readonly AgentStateStore _state;
    private readonly DaemonLog _log;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, SemaphoreSlim> _volumeLocks;

    public AgentService(AgentConfig config, TrackedPool pool, ITransport transport, DaemonLog log, TimeProvider? time = null)
    {
        CheckVolumes(config, pool);
        _config = config;
        _pool = pool;
        _transport = transport;
        _log = log;
        _time = time ?? TimeProvider.System;
        _state = new AgentStateStore(config.StatePath);
        _volumeLocks = config.Volumes.ToDictionary(v => v.Name, _ => new SemaphoreSlim(1, 1));
    }

    /// <summary>Refuses a configured volume the pool does not have, naming <c>volumes[i].name</c>; writes nothing.</summary>
    public static void CheckVolumes(AgentConfig config, TrackedPool pool)
    {
        for (int i = 0; i < config.Volumes.Count; i++)
        {
            if (pool.Pool.Volumes.All(v => v.Name != config.Volumes[i].Name))
                throw new ConfigException(config.File ?? "(agent config)", $"volumes[{i}].name", $"the pool {pool.Directory} has no volume '{config.Volumes[i].Name}'");
        }
    }

    public AgentStateStore State => _state;

    /// <summary>Backs <paramref name="volume"/> up now and returns once the receiver committed the point.</summary>
    public async Task<BackupResult> BackupAsync(string volume, IProgress<BackupProgress>? progress, CancellationToken cancellationToken)
    {
        var settings = _config.FindVolume(volume)
            ?? throw new InvalidOperationException($"volume '{volume}' is not in this agent's configuration (volumes: {string.Join(", ", _config.Volumes.Select(v => v.Name))})");
        var gate = _volumeLocks[volume];
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            bool fallback = settings.FullBackupOnBaseMismatch ?? _config.FullBackupOnBaseMismatch;
            try
            {
                return await RunAsync(volume, progress, cancellationToken).ConfigureAwait(false);
            }
            catch (BackupRefusedException e) when (e.Code == WireErrorCode.BaseMismatch && fallback)
            {
                _log.Warn($"{volume}: the receiver does not hold our base ({e.Message}); starting a full backup as configured");
                ForgetBase(volume);
                return await RunAsync(volume, progress, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>The volume's base and pending backup, for status.</summary>
    public VolumeBackupState StatusOf(string volume) => _state.Load(volume);

    private async Task<BackupResult> RunAsync(string volume, IProgress<BackupProgress>? progress, CancellationToken cancellationToken)
    {
        var entry = _pool.Entry(volume);
        var state = _state.Load(volume);
        if (state.DeviceId != entry.DeviceId && (state.BasePoint is not null || state.Pending is not null))
        {
            _log.Warn($"{volume}: the volume was made again (device {state.DeviceId} → {entry.DeviceId}); starting over with a full backup");
            state = ForgetBase(volume);
        }
        if (state.BasePoint is not null && (state.BaseSize != entry.Size || state.BaseHashes is null))
        {
            _log.Warn($"{volume}: the volume's size changed ({state.BaseSize} → {entry.Size} bytes); a full backup follows");
            state = ForgetBase(volume);
        }
        if (state.BasePoint is not null && !BlockHashTable.Fits(_state.HashesPath(state.BaseHashes!), state.BaseSize, state.BaseBlockSize))
        {
            // Missing, damaged, or of an older version (32-byte SHA-256 entries): the base image is
            // gone from this host, so the table cannot be rebuilt, and without it no digest can be.
            _log.Warn($"{volume}: the base's block hash table {state.BaseHashes} is missing or of an older format; a full backup follows");
            state = ForgetBase(volume);
        }
        var pending = state.Pending;
        if (pending is not null && (pending.BasePoint != state.BasePoint || _pool.Pool.Volumes.All(v => v.Name != pending.Snapshot)))
        {
            _log.Warn($"{volume}: dropping the unfinished backup of {pending.Snapshot} (its snapshot or base is gone)");
            DeleteSnapshot(pending.Snapshot);
            pending = null;
        }
        if (pending is null)
        {
            string name = volume + SnapshotPrefix + _time.GetUtcNow().ToString("yyyyMMddTHHmmssfffZ");
            var snap = await _pool.SnapshotAsync(volume, name, cancellationToken).ConfigureAwait(false);
            pending = new PendingBackup(snap.Name, (uint?)snap.ChangeEpoch, state.BasePoint, _time.GetUtcNow());
            state = state with { DeviceId = entry.DeviceId, Pending = pending };
            _state.Save(volume, state); // durable before anything is offered, so a restart offers the same target
            _log.Info($"{volume}: snapshot {snap.Name} at era {snap.ChangeEpoch}; backing up " + (state.BasePoint is null ? "in full" : $"changes since point {state.BasePoint}"));
        }
        else
        {
            _log.Info($"{volume}: continuing the backup of {pending.Snapshot}");
        }
        DeleteStraySnapshots(volume, pending.Snapshot);
        _state.RemoveStrayTables(volume, state);

        BlockHashTable? baseHashes = null;
        try
        {
            if (state.BasePoint is not null)
                baseHashes = BlockHashTable.Open(_state.HashesPath(state.BaseHashes!), state.BaseSize, state.BaseBlockSize);
            using var source = await SnapshotBackupSource.PrepareAsync(_pool, _config.Agent, volume, pending.Snapshot, state.BasePoint, state.BaseEra,
                baseHashes, _state.HashesPath(AgentStateStore.PendingHashesName(volume)), cancellationToken).ConfigureAwait(false);
            baseHashes?.Dispose();
            baseHashes = null;
            var sender = new BackupSender(SenderOptions());
            var result = await sender.RunAsync(_transport, source, new PhaseLog(volume, _log, progress), cancellationToken).ConfigureAwait(false);

            // Committed on the receiver: the point is the new base. Table first, then the state that names it.
            source.Hashes.Flush();
            string tableName = AgentStateStore.BaseHashesName(volume, result.Point);
            source.Dispose();
            File.Move(_state.HashesPath(AgentStateStore.PendingHashesName(volume)), _state.HashesPath(tableName), overwrite: true);
            string? oldTable = state.BaseHashes;
            var next = new VolumeBackupState
            {
                DeviceId = entry.DeviceId,
                BasePoint = result.Point,
                BaseEra = pending.Era,
                BaseSize = source.Size,
                BaseBlockSize = source.BlockSize,
                BaseHashes = tableName,
                BaseTime = pending.Started,
            };
            _state.Save(volume, next);
            if (oldTable is not null && oldTable != tableName)
                File.Delete(_state.HashesPath(oldTable));
            DeleteSnapshot(pending.Snapshot);
            _log.Info($"{volume}: point {result.Point} committed: {result.ChangedBytes} bytes changed, {result.DataBytes} sent as data, {result.WireBytes} on the wire in {result.Elapsed.TotalSeconds:F1} s" + (result.Resumed ? " (resumed)" : "")
                + $"; framing {result.Timings.Framing.TotalSeconds:F2} s, publishing {result.Timings.Publishing.TotalSeconds:F2} s, waiting for the receiver {result.Timings.WaitingForReceiver.TotalSeconds:F2} s, committing {result.Timings.Committing.TotalSeconds:F2} s");
            return result;
        }
        finally
        {
            baseHashes?.Dispose();
        }
    }

    private BackupSenderOptions SenderOptions() => new()
    {
        CompressionLevel = _config.ZstdLevel,
        CompressionThreads = _config.CompressionThreads == 0 ? BackupSenderOptions.Default.CompressionThreads : _config.CompressionThreads,
        OfferTimeout = TimeSpan.FromSeconds(_config.ReplyTimeoutSeconds),
        AckTimeout = TimeSpan.FromSeconds(_config.ReplyTimeoutSeconds),
        RetryDelay = TimeSpan.FromSeconds(Math.Min(2, _config.ReplyTimeoutSeconds)),
        // Attempts are bounded by the deadline: a receiver or NATS down for a while is waited for.
        MaxAttempts = int.MaxValue,
        Deadline = _config.BackupDeadlineSeconds == 0 ? null : TimeSpan.FromSeconds(_config.BackupDeadlineSeconds),
    };

    private VolumeBackupState ForgetBase(string volume)
    {
        var old = _state.Load(volume);
        if (old.Pending is not null)
            DeleteSnapshot(old.Pending.Snapshot);
        var state = new VolumeBackupState { DeviceId = _pool.Entry(volume).DeviceId };
        _state.Save(volume, state);
        _state.RemoveStrayTables(volume, state);
        return state;
    }

    private void DeleteStraySnapshots(string volume, string keep)
    {
        foreach (var v in _pool.Pool.Volumes.Where(v => v.SnapshotOf == volume && v.Name.StartsWith(volume + SnapshotPrefix, StringComparison.Ordinal) && v.Name != keep).ToList())
            DeleteSnapshot(v.Name);
    }

    private void DeleteSnapshot(string name)
    {
        if (_pool.Pool.Volumes.Any(v => v.Name == name))
            _pool.DeleteVolume(name);
    }

    /// <summary>Passes progress on and logs each change of phase (offering, sending, waiting, committing).</summary>
    private sealed class PhaseLog(string volume, DaemonLog log, IProgress<BackupProgress>? next) : IProgress<BackupProgress>
    {
        private string? _phase;

        public void Report(BackupProgress value)
        {
            if (value.Phase != Interlocked.Exchange(ref _phase, value.Phase))
                log.Info($"{volume}: {value.Phase} ({value.BytesDone} of {value.BytesTotal} bytes durable)");
            next?.Report(value);
        }
    }
}
