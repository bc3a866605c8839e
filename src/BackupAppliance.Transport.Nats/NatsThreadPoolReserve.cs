namespace BackupAppliance.Transport.Nats;

/// <summary>
/// NATS.Client 0.8.0 runs each connection's event loop (the one that raises disconnected and
/// reconnected) as a plain task that blocks a thread-pool thread for the connection's whole life. On
/// a 2-core machine the pool starts with 2 threads, so two connections starve it: events, awaits and
/// connects then stall for seconds. Each live connection therefore raises the pool's minimum by one
/// thread, and gives it back when closed. The pool's own setting is the only state.
/// </summary>
internal static class NatsThreadPoolReserve
{
    private static readonly object Gate = new();

    public static void Take() => Adjust(+1);

    public static void Return() => Adjust(-1);

    private static void Adjust(int delta)
    {
        lock (Gate)
        {
            ThreadPool.GetMinThreads(out int workers, out int io);
            ThreadPool.SetMinThreads(Math.Max(1, workers + delta), io);
        }
    }
}
