using BackupAppliance.Core;
using BackupAppliance.Era;
using BackupAppliance.Era.Tracking;
using BackupAppliance.Thin.Delta;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.ChangeTracking;

/// <summary>
/// A thin pool whose writable volumes each carry a dm-era tracker (<c>DIR/era/ID.era</c>, era block
/// = pool block): every write path opened through here marks what it changes, snapshots are taken
/// at an era checkpoint with writes held back, and change sets come by era (no old snapshot needed)
/// or by a changes-only diff against a snapshot. Open pools through this type wherever volumes are
/// written (serve, import, the agent), so no write escapes the tracking.
/// </summary>
public sealed class TrackedPool : IAsyncDisposable, IDisposable
{
    public const string EraFolder = "era";

    private readonly ThinPool _pool;
    private readonly EraTrackerOptions _options;
    private readonly TimeProvider _time;
    private readonly Dictionary<ulong, EraTracker> _trackers = new();
    private readonly object _sync = new();
    private bool _disposed;

    private TrackedPool(ThinPool pool, EraTrackerOptions? options, TimeProvider? time, bool suspendTracking = false)
    {
        _pool = pool;
        TrackingSuspended = suspendTracking;
        _options = options ?? new();
        _time = time ?? TimeProvider.System;
        System.IO.Directory.CreateDirectory(System.IO.Path.Combine(pool.Directory, EraFolder));
    }

    public static TrackedPool Create(string dir, long dataSize, PoolSettings settings, long? metadataSize = null,
        EraTrackerOptions? options = null, TimeProvider? time = null, TimeSpan? commitInterval = null) =>
        new(ThinPool.Create(dir, dataSize, settings, metadataSize, time, commitInterval), options, time);

    /// <summary>
    /// Opens a pool. With <paramref name="suspendTracking"/> writes skip the era trackers (for
    /// measuring what tracking costs); to stay safe, every block of a volume opened for writing is
    /// then marked as written in the current era, so the next change set by era is the whole volume.
    /// </summary>
    public static TrackedPool Open(string dir, EraTrackerOptions? options = null, TimeProvider? time = null, TimeSpan? commitInterval = null, bool suspendTracking = false) =>
        new(ThinPool.Open(dir, time, commitInterval), options, time, suspendTracking);

    /// <summary>True when writes bypass the trackers (every block counts as changed instead).</summary>
    public bool TrackingSuspended { get; }

    public ThinPool Pool => _pool;
    public string Directory => _pool.Directory;

    public string EraFile(VolumeEntry v) => System.IO.Path.Combine(_pool.Directory, EraFolder, $"{v.DeviceId}.era");

    public VolumeEntry Entry(string name) =>
        _pool.Volumes.FirstOrDefault(v => v.Name == name) ?? throw new KeyNotFoundException($"no volume named '{name}'");

    /// <summary>Creates a volume and its era tracker; returns it tracked.</summary>
    public IBlockVolume CreateVolume(string name, long size, string? origin = null)
    {
        var v = _pool.CreateVolume(name, size, origin);
        return Tracked(v);
    }

    /// <summary>A volume for I/O: writable volumes come with their tracker on the write path, snapshots as they are.</summary>
    public IBlockVolume OpenVolume(string name)
    {
        var v = _pool.OpenVolume(name);
        return v.IsReadOnly ? v : Tracked(v);
    }

    private IBlockVolume Tracked(ThinVolume v)
    {
        var tracker = Tracker(v.Entry);
        if (!TrackingSuspended)
            return new EraTrackedVolume(v, tracker);
        tracker.MarkAsync(0, tracker.NrBlocks, CancellationToken.None).AsTask().GetAwaiter().GetResult();
        return v;
    }

    /// <summary>
    /// A read-only snapshot taken at an era checkpoint: writes are held back while the era rolls
    /// over and the snapshot is made, so the snapshot holds exactly the writes of the eras before
    /// the one it records. Changes since the snapshot are then "written since" that era.
    /// </summary>
    public async Task<VolumeEntry> SnapshotAsync(string name, string snapshotName, CancellationToken cancellationToken)
    {
        var origin = Entry(name);
        if (origin.ReadOnly)
            return _pool.Snapshot(name, snapshotName).Entry; // a snapshot of a snapshot: nothing writes it
        var tracker = Tracker(origin);
        VolumeEntry? snap = null;
        await tracker.CheckpointAsync(era =>
        {
            snap = _pool.Snapshot(name, snapshotName, changeEpoch: era).Entry;
            return default;
        }, cancellationToken).ConfigureAwait(false);
        return snap!;
    }

    /// <summary>Deletes a volume and its era metadata.</summary>
    public void DeleteVolume(string name)
    {
        var v = Entry(name);
        EraTracker? t;
        lock (_sync)
        {
            if (_trackers.Remove(v.DeviceId, out t))
                t.Dispose();
        }
        _pool.DeleteVolume(name);
        File.Delete(EraFile(v));
    }

    public VolumeTrackingStatus Status(string name)
    {
        var v = Entry(name);
        var snaps = _pool.Volumes.Where(s => s.SnapshotOf == name)
            .Select(s => new SnapshotEpoch(s.Name, s.DeviceId, s.Created, s.ChangeEpoch)).ToList();
        if (v.ReadOnly)
            return new VolumeTrackingStatus(v.Name, v.DeviceId, v.Size, _pool.DataBlockSize, true, null, null, Array.Empty<uint>(), snaps);
        uint era = 0;
        IReadOnlyList<uint> archived = Array.Empty<uint>();
        WithTracking(v, t => { era = t.CurrentEra; archived = t.ArchivedEras; }, md => { era = md.CurrentEra; archived = md.ArchivedEras.ToList(); });
        return new VolumeTrackingStatus(v.Name, v.DeviceId, v.Size, _pool.DataBlockSize, false, EraFile(v), era, archived, snaps);
    }

    /// <summary>
    /// Blocks written since <paramref name="era"/>, classified by the mapping of
    /// <paramref name="asOf"/> (a snapshot of the volume, e.g. the one the backup reads) or of the
    /// volume itself: mapped blocks are data to copy, unmapped ones were discarded. With a snapshot
    /// taken at a checkpoint, only the eras before the one it recorded count (what it holds).
    /// O(changes): the old snapshot is not needed.
    /// </summary>
    public async Task<ChangeSet> ChangesSinceEraAsync(string name, uint era, string? asOf, CancellationToken cancellationToken)
    {
        var v = Entry(name);
        if (v.ReadOnly)
            throw new ArgumentException($"'{name}' is a snapshot; change tracking belongs to the volume it was taken of ({v.SnapshotOf})");
        var mappingOf = asOf is null ? v : Entry(asOf);
        if (asOf is not null && mappingOf.SnapshotOf != name)
            throw new ArgumentException($"'{asOf}' is not a snapshot of '{name}'");
        // A snapshot holds the writes of the eras before the one it recorded: later writes are not in it.
        uint before = mappingOf.ChangeEpoch is { } epoch && asOf is not null ? (uint)epoch : uint.MaxValue;
        List<(uint First, uint End)> runs = new();
        uint current = 0;
        WithTracking(v, t => { current = t.CurrentEra; runs = t.WrittenSince(era, before); },
            md => { current = md.CurrentEra; md.WrittenSince(era, before, (f, e) => runs.Add((f, e))); });
        if (era > current)
            throw new ArgumentException($"era {era} has not begun yet (volume '{name}' is in era {current})");
        var volume = _pool.OpenVolume(mappingOf.Name);
        long bs = _pool.DataBlockSize;
        var list = new VolumeExtentList();
        foreach (var (first, end) in runs)
        {
            long from = first * bs, to = Math.Min(end * bs, v.Size);
            if (to <= from)
                continue;
            foreach (var e in await volume.GetAllocationAsync(from, to - from, cancellationToken).ConfigureAwait(false))
                list.Add(e.Offset, e.Length, e.IsHole);
        }
        return new ChangeSet(name, ChangeMethod.Era, (int)bs, list.Items) { SinceEra = era };
    }

    /// <summary>
    /// The changes-only btree diff of <paramref name="name"/> against its older snapshot
    /// <paramref name="snapshot"/>, walked through a metadata snapshot without the pool's lock.
    /// </summary>
    public ChangeSet ChangesSinceSnapshot(string name, string snapshot)
    {
        var v = Entry(name);
        var s = Entry(snapshot);
        long bs = _pool.DataBlockSize;
        List<DeltaRange> ranges;
        using (var held = _pool.ReserveMetadataSnapshot())
            ranges = held.Changes(snapshot, name);
        var list = new VolumeExtentList();
        foreach (var r in ranges)
        {
            if (r.Kind == DeltaKind.Same)
                continue;
            long from = (long)r.Begin * bs, to = Math.Min((long)(r.Begin + r.Length) * bs, v.Size);
            list.Add(from, to - from, hole: r.Kind == DeltaKind.LeftOnly);
        }
        return new ChangeSet(name, ChangeMethod.SnapshotDiff, (int)bs, list.Items)
        {
            SinceSnapshot = snapshot,
            SinceEra = s.ChangeEpoch is { } e ? (uint)e : null,
        };
    }

    /// <summary>The volume's tracker, opened (activated) or created on first use and kept while the pool is open.</summary>
    private EraTracker Tracker(VolumeEntry v)
    {
        lock (_sync)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_trackers.TryGetValue(v.DeviceId, out var t))
                return t;
            string path = EraFile(v);
            t = File.Exists(path)
                ? EraTracker.Open(path, _options, _time)
                : EraTracker.Create(path, _pool.DataBlockSize, v.Size, _options, _time);
            _trackers.Add(v.DeviceId, t);
            return t;
        }
    }

    /// <summary>Runs a query on the open tracker, or on the era file opened read-only (no new era) when nothing writes the volume.</summary>
    private void WithTracking(VolumeEntry v, Action<EraTracker> open, Action<EraMetadata> readOnly)
    {
        EraTracker? t;
        lock (_sync)
            _trackers.TryGetValue(v.DeviceId, out t);
        if (t is not null)
        {
            open(t);
            return;
        }
        string path = EraFile(v);
        if (!File.Exists(path))
            throw new InvalidOperationException($"volume '{v.Name}' has no era tracking yet ({path} is missing); it starts the first time the volume is opened for writing");
        using var md = EraMetadata.Open(path, EraOpenMode.ReadOnly);
        readOnly(md);
    }

    public async ValueTask DisposeAsync()
    {
        List<EraTracker> trackers;
        lock (_sync)
        {
            if (_disposed)
                return;
            _disposed = true;
            trackers = _trackers.Values.ToList();
            _trackers.Clear();
        }
        // The pool commits its data and metadata first; then each tracker archives its writeset.
        await _pool.DisposeAsync().ConfigureAwait(false);
        foreach (var t in trackers)
            t.Dispose();
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
