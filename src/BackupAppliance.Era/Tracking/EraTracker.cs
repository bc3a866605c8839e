using BackupAppliance.Core;

namespace BackupAppliance.Era.Tracking;

/// <summary>
/// Change tracking of one volume in a dm-era metadata file, following dm-era's rule: a block's bit
/// in the current era's writeset is committed before a write to that block is issued, and it is set
/// in the in-core copy only after that commit. Writes that arrive while a commit runs share the next
/// one (group commit), so a burst of first writes costs one metadata commit, not one each. Marks,
/// checkpoints, digest steps and queries are serialised; <see cref="EraMetadata.IsMarked"/> is not,
/// so writes to blocks already marked in this era pass straight through.
/// </summary>
public sealed class EraTracker : IDisposable
{
    private readonly EraMetadata _md;
    private readonly EraTrackerOptions _options;
    private readonly object _metadataLock = new();
    private readonly object _queueLock = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _digester;
    private List<PendingMark> _pending = new();
    private bool _committing;
    private bool _disposed;
    private long _commits;

    private EraTracker(EraMetadata md, int blockSize, EraTrackerOptions options, TimeProvider time)
    {
        _md = md;
        BlockSize = blockSize;
        _options = options;
        Gate = new WriteGate();
        _digester = options.DigestInterval > TimeSpan.Zero ? Task.Run(() => DigestLoop(time)) : Task.CompletedTask;
    }

    /// <summary>Creates the era metadata file for a volume of <paramref name="volumeSize"/> bytes tracked in blocks of <paramref name="blockSize"/> bytes.</summary>
    public static EraTracker Create(string path, int blockSize, long volumeSize, EraTrackerOptions? options = null, TimeProvider? time = null)
    {
        if (blockSize <= 0 || blockSize % 4096 != 0)
            throw new ArgumentException($"era block size {blockSize} bytes is not a positive multiple of 4 KiB");
        long blocks = (volumeSize + blockSize - 1) / blockSize;
        if (blocks >= int.MaxValue)
            throw new ArgumentException($"a volume of {volumeSize} bytes has {blocks} blocks of {blockSize} bytes; dm-era tracks fewer than 2^31");
        var md = EraMetadata.Create(path, (uint)(blockSize / 512), (uint)blocks);
        return new EraTracker(md, blockSize, options ?? new(), time ?? TimeProvider.System);
    }

    /// <summary>Opens (activates) a tracker: a writeset left by a crash is archived, then a new era starts.</summary>
    public static EraTracker Open(string path, EraTrackerOptions? options = null, TimeProvider? time = null)
    {
        var md = EraMetadata.Open(path, EraOpenMode.Activate);
        return new EraTracker(md, (int)(md.DataBlockSizeSectors * 512), options ?? new(), time ?? TimeProvider.System);
    }

    public string Path => _md.Path;
    public int BlockSize { get; }
    public uint NrBlocks => _md.NrBlocks;

    /// <summary>Writes enter this gate from before their mark until they complete; a checkpoint closes it.</summary>
    public WriteGate Gate { get; }

    /// <summary>Metadata commits that recorded marks so far (a commit records every mark queued while the one before it ran).</summary>
    public long MarkCommits => Interlocked.Read(ref _commits);

    public uint CurrentEra
    {
        get { lock (_metadataLock) return _md.CurrentEra; }
    }

    public IReadOnlyList<uint> ArchivedEras
    {
        get { lock (_metadataLock) return _md.ArchivedEras.ToList(); }
    }

    /// <summary>
    /// Makes sure blocks [<paramref name="firstBlock"/>, <paramref name="endBlock"/>) are marked in
    /// the current era and the mark is committed. Completes at once when they already are.
    /// </summary>
    public ValueTask MarkAsync(uint firstBlock, uint endBlock, CancellationToken cancellationToken)
    {
        if (endBlock <= firstBlock || _md.AreAllMarked(firstBlock, endBlock))
            return default;
        return new ValueTask(MarkAndCommit(firstBlock, endBlock));
    }

    public bool AreAllMarked(uint firstBlock, uint endBlock) => _md.AreAllMarked(firstBlock, endBlock);

    private Task MarkAndCommit(uint firstBlock, uint endBlock)
    {
        var mark = new PendingMark(firstBlock, endBlock);
        bool lead;
        lock (_queueLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            _pending.Add(mark);
            lead = !_committing;
            _committing = true;
        }
        // The commit runs on a thread-pool thread, not the caller's: an NBD connection's thread
        // would otherwise sit in the commit's fsyncs and read no further requests meanwhile, so
        // each commit would carry one write's mark (measured over NBD, 4 KiB writes into blocks
        // not yet marked: 2 fsyncs per write). Freed, it queues the next requests' marks, which
        // share the next commit.
        if (lead)
            _ = Task.Run(CommitPending);
        return mark.Done.Task;
    }

    /// <summary>Commits batches until none is waiting: marks queued during one commit share the next.</summary>
    private void CommitPending()
    {
        while (true)
        {
            List<PendingMark> batch;
            lock (_queueLock)
            {
                if (_pending.Count == 0)
                {
                    _committing = false;
                    return;
                }
                batch = _pending;
                _pending = new();
            }
            Exception? failure = null;
            try
            {
                lock (_metadataLock)
                {
                    foreach (var m in batch)
                        _md.Mark(m.First, m.End);
                    _md.Commit();
                }
                Interlocked.Increment(ref _commits);
            }
            catch (Exception e)
            {
                failure = new VolumeException(VolumeError.IoError, $"era tracking ({_md.Path}) could not record the write: {e.Message}", e);
            }
            foreach (var m in batch)
            {
                if (failure is null)
                    m.Done.TrySetResult();
                else
                    m.Done.TrySetException(failure);
            }
        }
    }

    /// <summary>
    /// dm-era's checkpoint with the device suspended: closes the gate (waits for writes in flight),
    /// starts a new era, runs <paramref name="whileClosed"/> with the new era (e.g. take the thin
    /// snapshot that the new era is counted from), then lets writes in again. Every write completed
    /// before is in an older era; every later one is in the new era or after.
    /// </summary>
    public async Task<uint> CheckpointAsync(Func<uint, ValueTask>? whileClosed, CancellationToken cancellationToken)
    {
        await Gate.CloseAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            uint era;
            lock (_metadataLock)
                era = _md.Checkpoint();
            if (whileClosed is not null)
                await whileClosed(era).ConfigureAwait(false);
            return era;
        }
        finally
        {
            Gate.Open();
        }
    }

    /// <summary>Blocks written in eras [<paramref name="era"/>, <paramref name="before"/>) (committed marks), as maximal runs, ascending.</summary>
    public List<(uint First, uint End)> WrittenSince(uint era, uint before = uint.MaxValue)
    {
        var runs = new List<(uint, uint)>();
        lock (_metadataLock)
            _md.WrittenSince(era, before, (first, end) => runs.Add((first, end)));
        return runs;
    }

    /// <summary>Digests archived writesets older than the kept ones; returns true while more remains.</summary>
    public bool DigestStep()
    {
        lock (_metadataLock)
        {
            uint current = _md.CurrentEra;
            uint below = current > _options.KeepUndigestedEras ? current - _options.KeepUndigestedEras : 0;
            if (below == 0 || _md.ArchivedEras.Count == 0 || _md.ArchivedEras[0] >= below)
                return false;
            bool more = _md.DigestStep(below, _options.DigestBitsPerStep);
            _md.Commit();
            return more;
        }
    }

    private async Task DigestLoop(TimeProvider time)
    {
        using var timer = new PeriodicTimer(_options.DigestInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
            {
                try
                {
                    while (!_stop.IsCancellationRequested && DigestStep())
                    {
                    }
                }
                catch (Exception e) when (e is IOException or CorruptMetadataException or SpaceExhaustedException)
                {
                    // Digest is an optimisation; a failing step leaves the writesets in place (answers
                    // stay exact) and the next mark's commit reports the metadata's trouble.
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Clean shutdown: the current writeset is archived and committed (dm-era's postsuspend).</summary>
    public void Dispose()
    {
        lock (_queueLock)
        {
            if (_disposed)
                return;
            _disposed = true;
        }
        _stop.Cancel();
        try { _digester.GetAwaiter().GetResult(); }
        catch (OperationCanceledException) { }
        lock (_metadataLock)
            _md.Dispose();
        _stop.Dispose();
    }

    private sealed class PendingMark(uint first, uint end)
    {
        public uint First { get; } = first;
        public uint End { get; } = end;
        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
