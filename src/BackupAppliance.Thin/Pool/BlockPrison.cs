namespace BackupAppliance.Thin.Pool;

/// <summary>
/// dm-thin's bio prison, for writes that provision data blocks. A write allocates its new blocks
/// under the pool's lock, fills them with the lock released (so the copies of several writes
/// overlap), and maps them under the lock again (a <see cref="ProvisionBatch"/>). Meanwhile its
/// virtual blocks are held: other writes and discards of them wait for the batch. A commit must
/// never record a block allocated but not yet mapped (after a crash it would be leaked), so it
/// raises a barrier: no new batch starts, and the commit waits until the batches in flight are
/// mapped. Not thread-safe: every member is called under the pool's lock.
/// </summary>
internal sealed class BlockPrison
{
    private readonly Dictionary<(ulong Dev, ulong VBlock), Task> _held = new();
    private int _inFlight;
    private int _barrierHolders;
    private TaskCompletionSource? _drained;
    private TaskCompletionSource? _barrier;

    /// <summary>Batches between allocation and mapping.</summary>
    public int InFlight => _inFlight;

    /// <summary>While set, a commit is waiting for the batches in flight: a new batch waits for this first.</summary>
    public Task? Barrier => _barrier?.Task;

    /// <summary>The task that ends the hold on a virtual block, or null when nobody holds it.</summary>
    public Task? HeldBy(ulong dev, ulong vblock) =>
        _held.Count == 0 ? null : _held.GetValueOrDefault((dev, vblock));

    /// <summary>A hold on any of a device's virtual blocks in [<paramref name="first"/>, <paramref name="end"/>), or null.</summary>
    public Task? HeldIn(ulong dev, ulong first, ulong end)
    {
        foreach (var (key, until) in _held)
            if (key.Dev == dev && key.VBlock >= first && key.VBlock < end)
                return until;
        return null;
    }

    /// <summary>Counts <paramref name="batch"/> in flight; its blocks are held as they are added (<see cref="Hold"/>).</summary>
    public void Start(ProvisionBatch batch)
    {
        if (_barrier is not null)
            throw new InvalidOperationException("a provisioning batch started while a commit waits for the batches in flight");
        _inFlight++;
    }

    public void Hold(ProvisionBatch batch, ulong vblock) => _held.Add((batch.DeviceId, vblock), batch.Done.Task);

    /// <summary>Ends <paramref name="batch"/>: its blocks are free again, and a commit waiting for it may run.</summary>
    public void Finish(ProvisionBatch batch)
    {
        foreach (var block in batch.Blocks)
            _held.Remove((batch.DeviceId, block.VBlock));
        if (--_inFlight == 0 && _drained is { } drained)
        {
            _drained = null;
            drained.TrySetResult();
        }
        batch.Done.TrySetResult();
    }

    /// <summary>
    /// For a commit: null when no batch is in flight (commit now, the lock held); otherwise raises
    /// the barrier and returns what to wait for, with the lock released. Each non-null return is
    /// paired with one <see cref="LowerBarrier"/> once the commit is done.
    /// </summary>
    public Task? RaiseBarrier()
    {
        if (_inFlight == 0)
            return null;
        _barrier ??= new(TaskCreationOptions.RunContinuationsAsynchronously);
        _barrierHolders++;
        return (_drained ??= new(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
    }

    public void LowerBarrier()
    {
        if (_barrierHolders == 0)
            throw new InvalidOperationException("the commit barrier was lowered more often than raised");
        if (--_barrierHolders == 0 && _barrier is { } barrier)
        {
            _barrier = null;
            barrier.TrySetResult();
        }
    }
}
