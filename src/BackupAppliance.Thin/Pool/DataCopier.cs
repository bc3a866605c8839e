using System.Collections.Concurrent;

namespace BackupAppliance.Thin.Pool;

/// <summary>
/// The pool's kcopyd: a few threads of its own that fill new data blocks (blocking reads and writes
/// of the data file, often waiting on the disk), so that the copies of several writes run side by
/// side without tying up thread-pool workers, whose number grows only slowly when they block
/// (measured over NBD: 4 KiB writes breaking the sharing of uncached blocks, 5,300 a second on the
/// thread pool, 7,600–8,400 on 4 to 16 threads of its own). Started on first use; the threads end
/// when it is disposed.
/// </summary>
internal sealed class DataCopier(int threads) : IDisposable
{
    private readonly BlockingCollection<(Action Work, TaskCompletionSource Done)> _queue = new();
    private readonly Lock _startLock = new();
    private Thread[]? _threads;

    /// <summary>
    /// Runs <paramref name="work"/> on one of the copier's threads. What awaits the result goes on
    /// on the thread pool: the caller's code never runs on (nor holds up) a copier thread.
    /// </summary>
    public Task Run(Action work)
    {
        EnsureStarted();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _queue.Add((work, done));
        return done.Task;
    }

    private void EnsureStarted()
    {
        if (Volatile.Read(ref _threads) is not null)
            return;
        lock (_startLock)
        {
            if (_threads is not null)
                return;
            var started = new Thread[threads];
            for (int i = 0; i < started.Length; i++)
            {
                started[i] = new Thread(Serve) { IsBackground = true, Name = "pool data copier" };
                started[i].Start();
            }
            Volatile.Write(ref _threads, started);
        }
    }

    private void Serve()
    {
        foreach (var (work, done) in _queue.GetConsumingEnumerable())
        {
            try
            {
                work();
                done.SetResult();
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        }
    }

    /// <summary>Lets queued work finish, then ends the threads.</summary>
    public void Dispose()
    {
        _queue.CompleteAdding();
        lock (_startLock)
        {
            foreach (var thread in _threads ?? [])
                thread.Join();
        }
        _queue.Dispose();
    }
}
