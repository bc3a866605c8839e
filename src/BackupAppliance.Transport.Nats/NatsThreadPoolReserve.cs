namespace BackupAppliance.Transport.Nats;

/// <summary>
/// NATS.Client 0.8.0 runs each connection's event loop (the one that raises disconnected and
/// reconnected) as a plain task that blocks a thread-pool thread for the connection's whole life, and
/// more of its work waits on the pool or blocks pool threads: its ping timer's callbacks wait for the
/// connection's lock (held across a blocking socket write), and its connects, plain and TLS, wait on
/// socket tasks whose completions run on the pool. On a 2-core machine the pool starts with 2 threads
/// and adds about one a second when starved: events, awaits and connects then stall for seconds
/// (a local connect became a 5 s timeout). Each live connection therefore raises the pool's minimum
/// by <see cref="ThreadsPerConnection"/> threads (the pool makes them only when work waits, and lets
/// idle ones go), and gives them back when closed. The pool's own setting is the only state.
/// </summary>
internal static class NatsThreadPoolReserve
{
    /// <summary>One for the event loop, the rest headroom for ping callbacks and connect completions.</summary>
    public const int ThreadsPerConnection = 4;

    private static readonly object Gate = new();

    public static void Take() => Adjust(+ThreadsPerConnection);

    public static void Return() => Adjust(-ThreadsPerConnection);

    private static void Adjust(int delta)
    {
        lock (Gate)
        {
            ThreadPool.GetMinThreads(out int workers, out int io);
            ThreadPool.SetMinThreads(Math.Max(1, workers + delta), io);
        }
    }
}
