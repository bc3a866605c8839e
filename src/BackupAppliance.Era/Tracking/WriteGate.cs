namespace BackupAppliance.Era.Tracking;

/// <summary>
/// Lets writes in concurrently and lets a checkpoint close the gate: <see cref="CloseAsync"/>
/// returns once every write that entered before it has left, and holds new writes back until
/// <see cref="Open"/>. That makes "written before the checkpoint" and "written after it" exact
/// (a write is in exactly one era and on exactly one side of a snapshot taken while closed), which
/// dm-era gets from suspending the device.
/// </summary>
public sealed class WriteGate
{
    private readonly object _sync = new();
    private int _inside;
    private TaskCompletionSource? _closed;
    private TaskCompletionSource? _drained;

    /// <summary>Enters without waiting when the gate is open; false when a checkpoint holds it closed.</summary>
    public bool TryEnter()
    {
        lock (_sync)
        {
            if (_closed is not null)
                return false;
            _inside++;
            return true;
        }
    }

    public async ValueTask EnterAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_sync)
            {
                if (_closed is null)
                {
                    _inside++;
                    return;
                }
                wait = _closed.Task;
            }
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public void Exit()
    {
        lock (_sync)
        {
            if (--_inside == 0)
                _drained?.TrySetResult();
        }
    }

    /// <summary>Closes the gate and waits for the writes inside to leave. One closer at a time.</summary>
    public async Task CloseAsync(CancellationToken cancellationToken)
    {
        Task drained;
        lock (_sync)
        {
            if (_closed is not null)
                throw new InvalidOperationException("the write gate is already closed");
            _closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _drained = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            if (_inside == 0)
                _drained.TrySetResult();
            drained = _drained.Task;
        }
        try
        {
            await drained.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Open();
            throw;
        }
    }

    public void Open()
    {
        TaskCompletionSource? closed;
        lock (_sync)
        {
            closed = _closed;
            _closed = null;
            _drained = null;
        }
        closed?.TrySetResult();
    }
}
