using BackupAppliance.Replication.Transport;
using NATS.Client;

namespace BackupAppliance.Transport.Nats;

/// <summary>
/// One subscription: NATS.Client 0.8.0 calls <see cref="OnMessage"/> on a thread of its own per
/// subscription, in arrival order. The client resends the subscription after a reconnect.
/// </summary>
internal sealed class NatsSubscription(string subject, TransportMessageHandler handler, TransportStateFeed feed) : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private IAsyncSubscription? _subscription;
    private int _disposed;

    public void Attach(IAsyncSubscription subscription) => _subscription = subscription;

    public void OnMessage(object? sender, MsgHandlerEventArgs args)
    {
        var m = args.Message;
        if (_stop.IsCancellationRequested)
            return;
        try
        {
            var pending = handler(new TransportMessage(m.Subject, m.Reply, m.Data ?? []), _stop.Token);
            if (!pending.IsCompletedSuccessfully)
            {
                // This is the client's own delivery thread for this subscription: waiting here is
                // the back pressure (the client then queues up to its pending limits, then drops
                // and reports a slow consumer). 0.8.0 has no asynchronous delivery to await instead.
                pending.AsTask().GetAwaiter().GetResult();
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // unsubscribed while the handler ran
        }
        catch (Exception e)
        {
            feed.Report(TransportState.Error, $"the handler of '{subject}' failed on '{m.Subject}': {e.Message}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
            return;
        await _stop.CancelAsync();
        var s = _subscription;
        if (s is null)
            return;
        try
        {
            s.Unsubscribe();
        }
        catch (NATSException)
        {
            // The connection is closed: nothing is subscribed any more.
        }
    }
}
