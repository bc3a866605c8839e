using BackupAppliance.Core;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Tests.Support;

/// <summary>
/// An <see cref="IReplicaStore"/> in memory for protocol tests: each point and staging is a byte
/// array with a <see cref="BlockHashTable"/> in a scratch directory. A staging keeps a durable copy
/// of its bytes, hashes and state at each <see cref="IStagedPoint.MakeDurableAsync"/>, and
/// <see cref="Crash"/> puts every staging back to it (what a power cut does to a real store).
/// </summary>
public sealed class MemoryReplicaStore : IReplicaStore, IDisposable
{
    private readonly string _directory;
    private readonly HashSet<(string, string)> _kept;
    private readonly Dictionary<(string, string), List<StoredPoint>> _points = new();
    private readonly Dictionary<(string, string), Staging> _stagings = new();
    private readonly object _gate = new();
    private readonly List<(ulong Sequence, TaskCompletionSource Reached)> _durableWaits = new();
    private int _generation;
    private int _nextFile;

    public MemoryReplicaStore(string directory, params (string Agent, string Volume)[] kept)
    {
        _directory = directory;
        _kept = new HashSet<(string, string)>(kept);
    }

    /// <summary>Data bytes the store accepts before every write throws <see cref="SpaceExhaustedException"/> (null: no limit).</summary>
    public long? SpaceLeft { get; set; }

    public int MakeDurableCalls { get; private set; }

    /// <summary>The next write that reaches this image offset throws <see cref="IOException"/>, once (a disk error on the receiver).</summary>
    public long? FailWriteAt { get; set; }

    /// <summary>How long each <see cref="IStagedPoint.MakeDurableAsync"/> takes (a slow disk on the receiver).</summary>
    public TimeSpan DurableDelay { get; set; }

    public bool Keeps(string agent, string volume) => _kept.Contains((agent, volume));

    public IReadOnlyList<ReplicaPoint> ListPoints(string agent, string volume)
    {
        lock (_gate)
            return _points.TryGetValue((agent, volume), out var list) ? list.Select(p => p.Point).ToList() : [];
    }

    public StagingState? FindStaging(string agent, string volume)
    {
        lock (_gate)
            return _stagings.TryGetValue((agent, volume), out var s) ? s.DurableState : null;
    }

    public ValueTask<IStagedPoint> ResumeStagingAsync(string agent, string volume, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            var s = _stagings[(agent, volume)];
            return ValueTask.FromResult<IStagedPoint>(new StagedHandle(this, s, _generation));
        }
    }

    public ValueTask<IStagedPoint> BeginStagingAsync(StagingRequest request, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            var key = (request.Agent, request.Volume);
            if (_stagings.Remove(key, out var old))
                old.Hashes.Dispose();
            var basePoint = request.BasePoint is null ? null : _points[key].Single(p => p.Point.Id == request.BasePoint);
            var image = new byte[request.Size];
            basePoint?.Image.AsSpan(0, (int)Math.Min(basePoint.Image.Length, image.Length)).CopyTo(image);
            var hashes = BlockHashTable.Create(NewFile(), request.Size, request.BlockSize, basePoint?.Hashes);
            var staging = new Staging(request, image, hashes);
            staging.MarkDurable(new StagingState(request, 0, 0, 0));
            _stagings[key] = staging;
            return ValueTask.FromResult<IStagedPoint>(new StagedHandle(this, staging, _generation));
        }
    }

    /// <summary>Loses everything not durable: every staging goes back to its last durable copy, and open handles die.</summary>
    public void Crash()
    {
        lock (_gate)
        {
            _generation++;
            foreach (var s in _stagings.Values)
                s.Revert();
        }
    }

    /// <summary>Completes once some staging of the store has made frames up to <paramref name="sequence"/> durable.</summary>
    public Task WhenDurable(ulong sequence)
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
            _durableWaits.Add((sequence, tcs));
        return tcs.Task;
    }

    /// <summary>The latest point's image.</summary>
    public byte[] LatestImage(string agent, string volume)
    {
        lock (_gate)
            return _points[(agent, volume)][^1].Image;
    }

    public BlockHashTable LatestHashes(string agent, string volume)
    {
        lock (_gate)
            return _points[(agent, volume)][^1].Hashes;
    }

    /// <summary>A copy of the unfinished staging's bytes, hash table and durable state, to show that nothing changed.</summary>
    public (byte[] Image, byte[] Hashes, StagingState State)? StagingSnapshot(string agent, string volume)
    {
        lock (_gate)
        {
            if (!_stagings.TryGetValue((agent, volume), out var s))
                return null;
            return (s.Image.ToArray(), s.ReadHashes(), s.DurableState);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var s in _stagings.Values)
                s.Hashes.Dispose();
            foreach (var list in _points.Values)
            {
                foreach (var p in list)
                    p.Hashes.Dispose();
            }
        }
    }

    private string NewFile() => Path.Combine(_directory, $"hashes-{Interlocked.Increment(ref _nextFile)}.bin");

    private sealed record StoredPoint(ReplicaPoint Point, byte[] Image, BlockHashTable Hashes);

    private sealed class Staging(StagingRequest request, byte[] image, BlockHashTable hashes)
    {
        private byte[] _durableImage = [];
        private byte[] _durableHashes = [];

        public StagingRequest Request { get; } = request;
        public byte[] Image { get; private set; } = image;
        public BlockHashTable Hashes { get; } = hashes;
        public StagingState DurableState { get; private set; } = new(request, 0, 0, 0);

        public byte[] ReadHashes()
        {
            var bytes = new byte[Hashes.BlockCount * WireProtocol.BlockHashSize];
            Hashes.Get(0, bytes);
            return bytes;
        }

        public void MarkDurable(StagingState state)
        {
            _durableImage = Image.ToArray();
            _durableHashes = ReadHashes();
            DurableState = state;
        }

        public void Revert()
        {
            Image = _durableImage.ToArray();
            Hashes.Set(0, _durableHashes);
        }
    }

    private sealed class StagedHandle(MemoryReplicaStore store, Staging staging, int generation) : IStagedPoint
    {
        public StagingState State
        {
            get
            {
                Check();
                return staging.DurableState;
            }
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, ReadOnlyMemory<byte> blockHashes, CancellationToken cancellationToken)
        {
            lock (store._gate)
            {
                Check();
                if (store.FailWriteAt is { } failAt && offset <= failAt && failAt < offset + data.Length)
                {
                    store.FailWriteAt = null;
                    throw new IOException($"injected write error at {failAt}");
                }
                if (store.SpaceLeft is { } left)
                {
                    if (left < data.Length)
                        throw new SpaceExhaustedException("data", 1024);
                    store.SpaceLeft = left - data.Length;
                }
                data.Span.CopyTo(staging.Image.AsSpan((int)offset));
                staging.Hashes.Set(offset / staging.Request.BlockSize, blockHashes.Span);
            }
            return ValueTask.CompletedTask;
        }

        public ValueTask ZeroAsync(long offset, long length, bool discard, CancellationToken cancellationToken)
        {
            lock (store._gate)
            {
                Check();
                staging.Image.AsSpan((int)offset, (int)length).Clear();
                staging.Hashes.SetZero(offset / staging.Request.BlockSize, BlockHashes.Count(length, staging.Request.BlockSize));
            }
            return ValueTask.CompletedTask;
        }

        public async ValueTask MakeDurableAsync(ulong sequence, long position, long changedBytes, CancellationToken cancellationToken)
        {
            if (store.DurableDelay > TimeSpan.Zero)
                await Task.Delay(store.DurableDelay, cancellationToken);
            List<TaskCompletionSource> reached = new();
            lock (store._gate)
            {
                Check();
                store.MakeDurableCalls++;
                staging.MarkDurable(new StagingState(staging.Request, sequence, position, changedBytes));
                foreach (var w in store._durableWaits.Where(w => w.Sequence <= sequence).ToList())
                {
                    store._durableWaits.Remove(w);
                    reached.Add(w.Reached);
                }
            }
            foreach (var r in reached)
                r.TrySetResult();
        }

        public byte[] ComputeDigest()
        {
            lock (store._gate)
            {
                Check();
                return staging.Hashes.ComputeDigest();
            }
        }

        public ValueTask<ReplicaPoint> PublishAsync(byte[] digest, CancellationToken cancellationToken)
        {
            lock (store._gate)
            {
                Check();
                var r = staging.Request;
                var key = (r.Agent, r.Volume);
                if (!store._points.TryGetValue(key, out var list))
                    store._points[key] = list = new List<StoredPoint>();
                var point = new ReplicaPoint(r.Agent, r.Volume, $"p{list.Count + 1}", r.BasePoint, r.Target, r.Stream,
                    DateTimeOffset.UnixEpoch, r.Size, r.BlockSize, staging.DurableState.ChangedBytes, digest);
                list.Add(new StoredPoint(point, staging.Image, staging.Hashes));
                store._stagings.Remove(key);
                return ValueTask.FromResult(point);
            }
        }

        public ValueTask AbandonAsync(CancellationToken cancellationToken)
        {
            lock (store._gate)
            {
                Check();
                store._stagings.Remove((staging.Request.Agent, staging.Request.Volume));
                staging.Hashes.Dispose();
            }
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;

        private void Check()
        {
            if (generation != store._generation)
                throw new IOException("the store crashed since this staging was opened");
        }
    }
}
