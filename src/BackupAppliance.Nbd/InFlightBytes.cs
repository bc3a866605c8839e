namespace BackupAppliance.Nbd;

/// <summary>
/// The data bytes of one connection's requests in flight (WRITE payloads held, READ buffers to
/// fill), bounded: the connection's loop takes a request's length before reading its payload or
/// starting it, and waits while that would pass the limit, so a client cannot make the server hold
/// more than the limit however large and many its requests are. A request larger than the limit
/// (never with the defaults) goes alone: it waits until nothing else is in flight.
/// </summary>
internal sealed class InFlightBytes(long limit) : IDisposable
{
    private readonly Lock _lock = new();
    private readonly ManualResetEventSlim _released = new(false);
    private long _held;

    /// <summary>Takes <paramref name="bytes"/>, waiting for requests in flight to give theirs back first if need be.</summary>
    public void Take(long bytes, CancellationToken cancellationToken)
    {
        while (true)
        {
            lock (_lock)
            {
                if (_held == 0 || _held + bytes <= limit)
                {
                    _held += bytes;
                    return;
                }
                _released.Reset();
            }
            _released.Wait(cancellationToken);
        }
    }

    public void Give(long bytes)
    {
        lock (_lock)
        {
            _held -= bytes;
            _released.Set();
        }
    }

    public void Dispose() => _released.Dispose();
}
