namespace BackupAppliance.Replication.Tests.Support;

/// <summary>
/// Bytes a warm operation allocates on this thread. The runtime itself may allocate once while it
/// recompiles a hot method (tiering, on-stack replacement) in the middle of a measured run, so the
/// operation is measured up to <c>attempts</c> times and the smallest figure is returned: an
/// allocation the code makes on every call shows in every run.
/// </summary>
public static class SteadyAllocation
{
    public static long Measure(Action operation, int attempts = 8)
    {
        operation(); // warm up: JIT and buffer sizes
        long least = long.MaxValue;
        for (int i = 0; i < attempts && least > 0; i++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            operation();
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }
        return least;
    }
}
