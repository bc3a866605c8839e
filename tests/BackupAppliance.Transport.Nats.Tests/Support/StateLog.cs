using System.Diagnostics;
using System.Threading.Channels;
using BackupAppliance.Replication.Transport;

namespace BackupAppliance.Transport.Nats.Tests.Support;

/// <summary>Records a transport's state changes so a test can wait for one (within a generous bound).</summary>
public sealed class StateLog : IDisposable
{
    private readonly Channel<TransportStateChange> _changes = Channel.CreateUnbounded<TransportStateChange>();
    private readonly List<TransportStateChange> _seen = [];
    private readonly IDisposable _subscription;

    public StateLog(ITransport transport)
    {
        _subscription = transport.StateChanges.Subscribe(c => _changes.Writer.TryWrite(c));
    }

    public IReadOnlyList<TransportStateChange> Seen => _seen;

    /// <summary>
    /// The next change of the given kind (others are kept in <see cref="Seen"/>), and how long it took
    /// from the call. Fails if none comes within <paramref name="bound"/>.
    /// </summary>
    public async Task<(TransportStateChange Change, TimeSpan After)> WaitForAsync(TransportState state, TimeSpan bound)
    {
        var clock = Stopwatch.StartNew();
        using var cts = new CancellationTokenSource(bound);
        try
        {
            while (true)
            {
                var c = await _changes.Reader.ReadAsync(cts.Token);
                _seen.Add(c);
                if (c.State == state)
                    return (c, clock.Elapsed);
            }
        }
        catch (OperationCanceledException)
        {
            // The pool's state too: a starved pool delays the client's events (see ThreadPoolFloor).
            ThreadPool.GetMinThreads(out int minimum, out _);
            throw new Xunit.Sdk.XunitException($"no {state} within {bound.TotalSeconds} s; saw: {string.Join("; ", _seen.Select(s => $"{s.State} ({s.Reason})"))}"
                + $" (thread pool: {ThreadPool.ThreadCount} threads, minimum {minimum}, {ThreadPool.PendingWorkItemCount} work items waiting)");
        }
    }

    public void Dispose() => _subscription.Dispose();
}
