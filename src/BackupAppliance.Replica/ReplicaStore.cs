using BackupAppliance.Core;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Wire;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Replica;

/// <summary>
/// A receiver's backup points in a folder over its own <see cref="ThinPool"/>: per (agent, volume) a
/// chain of read-only thin volumes, each a snapshot of the one before with a delta applied, and at
/// most one staging. A point is published by one atomic catalogue write (the staging volume renamed
/// to the point's name, read-only) after its record and hash table are durable, so after a crash
/// <see cref="Open"/> finds each point whole or not at all (what <c>ARCHITECTURE.md</c> rule 6 asks).
/// Safe to use for different volumes at once; calls for one volume come one at a time.
/// </summary>
public sealed class ReplicaStore : IReplicaStore, IAsyncDisposable
{
    /// <summary>The id <see cref="FindPoint"/> accepts for a volume's newest point.</summary>
    public const string Latest = "latest";

    private readonly StoreLayout _layout;
    private readonly ThinPool _pool;
    private readonly ReplicaStoreOptions _options;
    private readonly object _gate = new();
    private readonly Dictionary<(string, string), List<ReplicaPoint>> _points = new();
    private readonly Dictionary<(string, string), StagingState> _stagings = new();
    private readonly Dictionary<(string, string), StagedPoint> _open = new();
    private bool _disposed;

    private ReplicaStore(StoreLayout layout, ThinPool pool, ReplicaStoreOptions options)
    {
        _layout = layout;
        _pool = pool;
        _options = options;
    }

    /// <summary>The store's folder.</summary>
    public string Directory => _layout.Root;

    /// <summary>The folder of the store's thin pool (its <c>metadata</c> file is what thin_check reads).</summary>
    public string PoolDirectory => _layout.Pool;

    /// <summary>The pool's space and mode.</summary>
    public PoolStatus PoolStatus() => _pool.Status();

    /// <summary>What opening the store's pool reclaimed (thin devices a crash left without a name); null when nothing.</summary>
    public string? PoolReclaimNote => _pool.ReclaimNote;

    /// <summary>Creates a store folder with a new pool of <paramref name="dataSize"/> bytes.</summary>
    public static ReplicaStore Create(string dir, long dataSize, PoolSettings settings, ReplicaStoreOptions? options = null, long? metadataSize = null)
    {
        var layout = new StoreLayout(dir);
        if (System.IO.Directory.Exists(layout.Pool))
            throw new IOException($"{layout.Root} already holds a replica store");
        options ??= new ReplicaStoreOptions();
        System.IO.Directory.CreateDirectory(layout.Root);
        ThinPool.Create(layout.Pool, dataSize, settings, metadataSize, options.Time, options.PoolCommitInterval).Dispose();
        FileSync.Directory(layout.Root);
        return Open(dir, options);
    }

    /// <summary>
    /// Opens a store and finishes what a crash interrupted: a point record or hash table without its
    /// volume is removed (the publish did not happen), and so is a staging missing any of its
    /// volume, hash table or progress record.
    /// </summary>
    /// <summary>Whether a store was made in <paramref name="dir"/> (its pool exists).</summary>
    public static bool Exists(string dir) => File.Exists(Path.Combine(new StoreLayout(dir).Pool, PoolSettings.FileName));

    public static ReplicaStore Open(string dir, ReplicaStoreOptions? options = null)
    {
        var layout = new StoreLayout(dir);
        if (!System.IO.Directory.Exists(layout.Pool))
            throw new DirectoryNotFoundException($"{layout.Root} is not a replica store (no {StoreLayout.PoolFolder} folder)");
        options ??= new ReplicaStoreOptions();
        var pool = ThinPool.Open(layout.Pool, options.Time, options.PoolCommitInterval);
        var store = new ReplicaStore(layout, pool, options);
        try
        {
            store.Recover();
            return store;
        }
        catch
        {
            pool.Dispose();
            throw;
        }
    }

    // ------------------------------------------------------------------ queries

    public bool Keeps(string agent, string volume)
    {
        if (!StoreLayout.IsName(agent) || !StoreLayout.IsName(volume))
            return false;
        return _options.Keep is null || _options.Keep.Any(k => k.Agent == agent && (k.Volume is null || k.Volume == volume));
    }

    /// <summary>Every (agent, volume) with a point or a staging, sorted.</summary>
    public IReadOnlyList<(string Agent, string Volume)> ListVolumes()
    {
        lock (_gate)
            return _points.Where(p => p.Value.Count > 0).Select(p => p.Key).Union(_stagings.Keys).Order().ToList();
    }

    public IReadOnlyList<ReplicaPoint> ListPoints(string agent, string volume)
    {
        var key = Key(agent, volume);
        lock (_gate)
            return _points.TryGetValue(key, out var list) ? list.ToList() : [];
    }

    /// <summary>The point with this id, or the newest for <see cref="Latest"/>; null if there is none.</summary>
    public ReplicaPoint? FindPoint(string agent, string volume, string id)
    {
        var list = ListPoints(agent, volume);
        return id == Latest ? list.LastOrDefault() : list.FirstOrDefault(p => p.Id == id);
    }

    public StagingState? FindStaging(string agent, string volume)
    {
        var key = Key(agent, volume);
        lock (_gate)
            return _stagings.GetValueOrDefault(key);
    }

    /// <summary>A point as a read-only volume (for reading or serving it).</summary>
    public IBlockVolume OpenPoint(string agent, string volume, string id)
    {
        var point = RequirePoint(agent, volume, id);
        return _pool.OpenVolume(StoreLayout.PointVolume(agent, volume, point.Id));
    }

    // ------------------------------------------------------------------ staging

    public async ValueTask<IStagedPoint> BeginStagingAsync(StagingRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        cancellationToken.ThrowIfCancellationRequested();
        var key = Key(request.Agent, request.Volume);
        if (!Keeps(request.Agent, request.Volume))
            throw new ReplicaStoreException(ReplicaStoreError.UnknownVolume, $"this store does not keep volume '{request.Volume}' of agent '{request.Agent}'");
        ValidateRequest(request);
        ReplicaPoint? basePoint = null;
        if (request.BasePoint is { } baseId)
        {
            basePoint = FindPoint(request.Agent, request.Volume, baseId)
                ?? throw new ReplicaStoreException(ReplicaStoreError.BaseMismatch, $"volume {request.Agent}/{request.Volume} has no point '{baseId}' to build on");
            if (basePoint.Size != request.Size || basePoint.BlockSize != request.BlockSize)
                throw new ReplicaStoreException(ReplicaStoreError.BaseMismatch,
                    $"base point {baseId} of {request.Agent}/{request.Volume} is {basePoint.Size} bytes in {basePoint.BlockSize}-byte blocks; the offer is {request.Size} bytes in {request.BlockSize}-byte blocks (a size change needs a full backup)");
        }

        DropStaging(key);
        if (basePoint is not null)
            await EnsureTableAsync(basePoint, cancellationToken).ConfigureAwait(false);
        string stagingName = StoreLayout.StagingVolume(request.Agent, request.Volume);
        string hashesPath = _layout.StagingHashes(request.Agent, request.Volume);
        EnsureFolder(_layout.StagingDir(request.Agent, request.Volume));
        BlockHashTable? table = null;
        ThinVolume? volume = null;
        try
        {
            if (basePoint is null)
            {
                table = BlockHashTable.Create(hashesPath, request.Size, request.BlockSize);
            }
            else
            {
                using var baseTable = BlockHashTable.Open(_layout.PointHashes(request.Agent, request.Volume, basePoint.Id), basePoint.Size, basePoint.BlockSize);
                table = BlockHashTable.Create(hashesPath, request.Size, request.BlockSize, baseTable);
            }
            table.Flush();
            volume = basePoint is null
                ? _pool.CreateVolume(stagingName, request.Size)
                : _pool.WritableSnapshot(StoreLayout.PointVolume(request.Agent, request.Volume, basePoint.Id), stagingName);
            // The progress record comes last: a staging without one is cleaned up on open.
            var state = new StagingState(request, 0, 0, 0);
            RecordFiles.WriteProgress(_layout.StagingProgress(request.Agent, request.Volume), state);
            var staged = new StagedPoint(this, volume, table, state);
            lock (_gate)
            {
                _stagings[key] = state;
                _open[key] = staged;
            }
            return staged;
        }
        catch
        {
            table?.Dispose();
            DeleteStagingFiles(request.Agent, request.Volume, deleteVolume: volume is not null);
            throw;
        }
    }

    public ValueTask<IStagedPoint> ResumeStagingAsync(string agent, string volume, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var key = Key(agent, volume);
        StagingState state;
        StagedPoint? previous;
        lock (_gate)
        {
            ThrowIfDisposed();
            state = _stagings.GetValueOrDefault(key)
                ?? throw new ReplicaStoreException(ReplicaStoreError.NoStaging, $"volume {agent}/{volume} has no unfinished staging to resume");
            _open.Remove(key, out previous);
        }
        previous?.Close(); // a handle from before the resume must not write any more
        var table = BlockHashTable.Open(_layout.StagingHashes(agent, volume), state.Request.Size, state.Request.BlockSize, writable: true);
        try
        {
            var staged = new StagedPoint(this, _pool.OpenVolume(StoreLayout.StagingVolume(agent, volume)), table, state);
            lock (_gate)
                _open[key] = staged;
            return ValueTask.FromResult<IStagedPoint>(staged);
        }
        catch
        {
            table.Dispose();
            throw;
        }
    }

    internal void RecordProgress(StagedPoint staged, StagingState next)
    {
        var r = next.Request;
        RecordFiles.WriteProgress(_layout.StagingProgress(r.Agent, r.Volume), next);
        lock (_gate)
            _stagings[(r.Agent, r.Volume)] = next;
    }

    internal async ValueTask<ReplicaPoint> PublishAsync(StagedPoint staged, byte[] digest, CancellationToken cancellationToken)
    {
        var state = staged.State;
        var r = state.Request;
        await staged.Volume.FlushAsync(cancellationToken).ConfigureAwait(false);
        staged.Table.Flush();
        cancellationToken.ThrowIfCancellationRequested();

        ReplicaPoint point;
        lock (_gate)
        {
            ThrowIfDisposed();
            string? latest = _points.TryGetValue((r.Agent, r.Volume), out var list) && list.Count > 0 ? list[^1].Id : null;
            point = new ReplicaPoint(r.Agent, r.Volume, PointId.Next(_options.Time.GetUtcNow(), latest), r.BasePoint, r.Target, r.Stream,
                _options.Time.GetUtcNow(), r.Size, r.BlockSize, state.ChangedBytes, digest.ToArray());
        }
        // Record and hash table first (an orphan pair is removed on open), then the one catalogue
        // write that makes the point exist.
        EnsureFolder(_layout.PointFolder(r.Agent, r.Volume));
        RecordFiles.WritePoint(_layout.PointRecord(r.Agent, r.Volume, point.Id), point);
        string pointHashes = _layout.PointHashes(r.Agent, r.Volume, point.Id);
        File.Delete(pointHashes);
        FileSync.HardLink(_layout.StagingHashes(r.Agent, r.Volume), pointHashes);
        FileSync.Directory(_layout.PointFolder(r.Agent, r.Volume));
        _pool.RenameVolume(StoreLayout.StagingVolume(r.Agent, r.Volume), StoreLayout.PointVolume(r.Agent, r.Volume, point.Id), readOnly: true);

        staged.Close();
        lock (_gate)
        {
            if (!_points.TryGetValue((r.Agent, r.Volume), out var list))
                _points[(r.Agent, r.Volume)] = list = new List<ReplicaPoint>();
            list.Add(point);
            _stagings.Remove((r.Agent, r.Volume));
            if (_open.GetValueOrDefault((r.Agent, r.Volume)) == staged)
                _open.Remove((r.Agent, r.Volume));
        }
        DeleteStagingFiles(r.Agent, r.Volume, deleteVolume: false);
        DropOlderTables(r.Agent, r.Volume);
        return point;
    }

    /// <summary>
    /// Only a volume's latest point keeps its block hash table: a backup builds on the latest point,
    /// and a table costs 16 bytes per block of the whole image (256 MiB per TiB), which the points
    /// would otherwise each hold again, shared with nothing. A point that becomes a base again without
    /// one (the points above it were deleted) gets it rebuilt from its bytes (<see cref="EnsureTableAsync"/>).
    /// A table left by a crash before this ran is removed on the next open.
    /// </summary>
    private void DropOlderTables(string agent, string volume)
    {
        List<ReplicaPoint> older;
        lock (_gate)
            older = _points.TryGetValue((agent, volume), out var list) ? list.Take(list.Count - 1).ToList() : [];
        foreach (var p in older)
            File.Delete(_layout.PointHashes(agent, volume, p.Id));
    }

    /// <summary>
    /// The base point's block hash table, rebuilt from the point's bytes when it has none, or one of
    /// an older format (32-byte SHA-256 entries, before protocol version 2).
    /// </summary>
    private async ValueTask EnsureTableAsync(ReplicaPoint point, CancellationToken cancellationToken)
    {
        string path = _layout.PointHashes(point.Agent, point.Volume, point.Id);
        if (BlockHashTable.Fits(path, point.Size, point.BlockSize))
            return;
        var source = _pool.OpenVolume(StoreLayout.PointVolume(point.Agent, point.Volume, point.Id));
        await PointTableBuilder.BuildAsync(source, path, point.BlockSize, cancellationToken).ConfigureAwait(false);
    }

    internal ValueTask AbandonAsync(StagedPoint staged, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var r = staged.State.Request;
        lock (_gate)
        {
            if (_open.GetValueOrDefault((r.Agent, r.Volume)) != staged)
                throw new ObjectDisposedException(nameof(IStagedPoint), $"this staging of {r.Agent}/{r.Volume} was published, abandoned or superseded");
        }
        DropStaging((r.Agent, r.Volume));
        return ValueTask.CompletedTask;
    }

    internal void Forget(StagedPoint staged)
    {
        var r = staged.State.Request;
        lock (_gate)
        {
            if (_open.GetValueOrDefault((r.Agent, r.Volume)) == staged)
                _open.Remove((r.Agent, r.Volume));
        }
    }

    // ------------------------------------------------------------------ restore

    /// <summary>
    /// Writes a point to <paramref name="imagePath"/> as a sparse image file: its length is the
    /// image size and only mapped, non-zero ranges are written. The file appears under its name only
    /// once complete and fsynced. <paramref name="progress"/> gets the image offset reached.
    /// </summary>
    public async ValueTask RestoreAsync(string agent, string volume, string pointId, string imagePath, bool overwrite, IProgress<long>? progress, CancellationToken cancellationToken)
    {
        var point = RequirePoint(agent, volume, pointId);
        string target = Path.GetFullPath(imagePath);
        if (!overwrite && Path.Exists(target))
            throw new IOException($"{target} already exists; pass overwrite to replace it");
        if (System.IO.Directory.Exists(target))
            throw new IOException($"{target} is a folder");
        var source = _pool.OpenVolume(StoreLayout.PointVolume(agent, volume, point.Id));
        await SparseImage.WriteAsync(source, target, overwrite, progress, cancellationToken).ConfigureAwait(false);
    }

    // ------------------------------------------------------------------ recovery and housekeeping

    private void Recover()
    {
        var names = _pool.Volumes.Select(v => v.Name).ToHashSet();
        foreach (var (agent, volume, folder) in NamedFolders(Path.Combine(_layout.Root, StoreLayout.PointsFolder)))
            RecoverPoints(agent, volume, folder, names);
        var valid = new HashSet<string>();
        foreach (var (agent, volume, _) in NamedFolders(Path.Combine(_layout.Root, StoreLayout.StagingFolder)))
        {
            if (RecoverStaging(agent, volume, names))
                valid.Add(StoreLayout.StagingVolume(agent, volume));
        }
        // Staging volumes nothing claims (RecoverStaging has already removed the ones it judged, so
        // look at the pool as it is now, not at the names read before).
        foreach (string name in _pool.Volumes.Select(v => v.Name).Where(n => StoreLayout.IsStagingVolume(n) && !valid.Contains(n)).ToList())
            _pool.DeleteVolume(name);
    }

    private void RecoverPoints(string agent, string volume, string folder, HashSet<string> names)
    {
        var points = new List<ReplicaPoint>();
        foreach (string file in System.IO.Directory.GetFiles(folder))
        {
            string name = Path.GetFileName(file);
            if (!name.EndsWith(StoreLayout.RecordExtension, StringComparison.Ordinal))
                continue;
            string id = name[..^StoreLayout.RecordExtension.Length];
            if (!PointId.IsValid(id))
                continue;
            if (!names.Contains(StoreLayout.PointVolume(agent, volume, id)))
            {
                // Written before a publish that did not happen.
                File.Delete(_layout.PointHashes(agent, volume, id));
                File.Delete(file);
                continue;
            }
            var point = RecordFiles.ReadPoint(file);
            if (point.Agent != agent || point.Volume != volume || point.Id != id)
                throw new InvalidDataException($"point record {file} names {point.Agent}/{point.Volume}@{point.Id}, not {agent}/{volume}@{id}");
            points.Add(point);
        }
        points.Sort((a, b) => PointId.Compare(a.Id, b.Id));
        // Tables of points that are not the latest (see DropOlderTables), and of no point at all.
        string? latest = points.Count > 0 ? points[^1].Id : null;
        foreach (string file in System.IO.Directory.GetFiles(folder))
        {
            string name = Path.GetFileName(file);
            bool orphanTable = name.EndsWith(StoreLayout.HashesExtension, StringComparison.Ordinal) && name[..^StoreLayout.HashesExtension.Length] != latest;
            if (orphanTable || name.EndsWith(".tmp", StringComparison.Ordinal))
                File.Delete(file);
        }
        FileSync.Directory(folder);
        if (points.Count > 0)
            _points[(agent, volume)] = points;
    }

    private bool RecoverStaging(string agent, string volume, HashSet<string> names)
    {
        string progress = _layout.StagingProgress(agent, volume);
        StagingState? state = null;
        if (File.Exists(progress) && names.Contains(StoreLayout.StagingVolume(agent, volume)))
        {
            state = RecordFiles.ReadProgress(progress);
            var r = state.Request;
            if (r.Agent != agent || r.Volume != volume)
                throw new InvalidDataException($"staging progress {progress} names {r.Agent}/{r.Volume}, not {agent}/{volume}");
            if (!BlockHashTable.Fits(_layout.StagingHashes(agent, volume), r.Size, r.BlockSize))
                state = null;
        }
        if (state is null)
        {
            DeleteStagingFiles(agent, volume, deleteVolume: names.Contains(StoreLayout.StagingVolume(agent, volume)));
            return false;
        }
        _stagings[(agent, volume)] = state;
        return true;
    }

    /// <summary>Closes an open handle and removes the staging: progress record first (it is then gone for good), then the volume and the table.</summary>
    private void DropStaging((string Agent, string Volume) key)
    {
        StagedPoint? open;
        lock (_gate)
        {
            ThrowIfDisposed();
            _open.Remove(key, out open);
            _stagings.Remove(key);
        }
        open?.Close();
        bool hasVolume = _pool.Volumes.Any(v => v.Name == StoreLayout.StagingVolume(key.Agent, key.Volume));
        DeleteStagingFiles(key.Agent, key.Volume, hasVolume);
    }

    private void DeleteStagingFiles(string agent, string volume, bool deleteVolume)
    {
        string dir = _layout.StagingDir(agent, volume);
        string progress = _layout.StagingProgress(agent, volume);
        if (File.Exists(progress))
        {
            File.Delete(progress);
            FileSync.Directory(dir);
        }
        if (deleteVolume)
            _pool.DeleteVolume(StoreLayout.StagingVolume(agent, volume));
        if (System.IO.Directory.Exists(dir))
        {
            System.IO.Directory.Delete(dir, recursive: true);
            FileSync.Directory(Path.GetDirectoryName(dir)!);
        }
    }

    /// <summary>Agent/volume folders under <paramref name="root"/> whose names are valid; anything else is left alone.</summary>
    private static IEnumerable<(string Agent, string Volume, string Folder)> NamedFolders(string root)
    {
        if (!System.IO.Directory.Exists(root))
            yield break;
        foreach (string agentDir in System.IO.Directory.GetDirectories(root).Order(StringComparer.Ordinal))
        {
            string agent = Path.GetFileName(agentDir);
            if (!StoreLayout.IsName(agent))
                continue;
            foreach (string volumeDir in System.IO.Directory.GetDirectories(agentDir).Order(StringComparer.Ordinal))
            {
                string volume = Path.GetFileName(volumeDir);
                if (StoreLayout.IsName(volume))
                    yield return (agent, volume, volumeDir);
            }
        }
    }

    /// <summary>Creates a folder and its missing parents under the store, each made durable in its parent.</summary>
    private void EnsureFolder(string folder)
    {
        if (System.IO.Directory.Exists(folder))
            return;
        string parent = Path.GetDirectoryName(folder)!;
        if (parent.Length > _layout.Root.Length)
            EnsureFolder(parent);
        System.IO.Directory.CreateDirectory(folder);
        FileSync.Directory(parent);
    }

    private ReplicaPoint RequirePoint(string agent, string volume, string id) =>
        FindPoint(agent, volume, id) ?? throw new ReplicaStoreException(ReplicaStoreError.UnknownPoint, $"volume {agent}/{volume} has no point '{id}'");

    private static void ValidateRequest(StagingRequest r)
    {
        string? problem =
            r.Size <= 0 ? $"image size {r.Size} is not positive"
            : r.BlockSize < WireProtocol.MinBlockSize || r.BlockSize > WireProtocol.MaxBlockSize || (r.BlockSize & (r.BlockSize - 1)) != 0
                ? $"block size {r.BlockSize} is not a power of two from {WireProtocol.MinBlockSize} to {WireProtocol.MaxBlockSize}"
            : r.Stream == 0 ? "stream id 0 is not allowed"
            : string.IsNullOrEmpty(r.Target) ? "the target snapshot id is empty"
            : r.BasePoint is "" ? "the base point id is empty (null means a full backup)"
            : null;
        if (problem is not null)
            throw new ReplicaStoreException(ReplicaStoreError.InvalidRequest, $"staging request for {r.Agent}/{r.Volume}: {problem}");
    }

    private static (string, string) Key(string agent, string volume)
    {
        StoreLayout.ValidateName(agent, "agent");
        StoreLayout.ValidateName(volume, "volume");
        return (agent, volume);
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Closes open stagings (they stay, to be resumed) and the pool, committing it.</summary>
    public async ValueTask DisposeAsync()
    {
        List<StagedPoint> open;
        lock (_gate)
        {
            if (_disposed)
                return;
            _disposed = true;
            open = _open.Values.ToList();
            _open.Clear();
        }
        foreach (var staged in open)
            staged.Close();
        await _pool.DisposeAsync().ConfigureAwait(false);
    }
}
