using System.Runtime.CompilerServices;

namespace BackupAppliance.Transport.Nats.Tests.Support;

/// <summary>
/// This assembly runs dozens of NATS connections at once (test classes in parallel, servers stopped,
/// frozen and restarted under them). NATS.Client 0.8.0 blocks thread-pool threads per connection
/// beyond what the transport reserves for a daemon's few connections, and a starved pool turned
/// local connects into 5 s timeouts and delayed disconnect events past their tests' bounds (about
/// one run in four on 2 cores; none in 8 runs with this floor). The floor is set once, before any
/// test, for this test process only.
/// </summary>
internal static class ThreadPoolFloor
{
    private const int MinWorkerThreads = 32;

    [ModuleInitializer]
    internal static void Raise()
    {
        ThreadPool.GetMinThreads(out int workers, out int io);
        ThreadPool.SetMinThreads(Math.Max(workers, MinWorkerThreads), io);
    }
}
