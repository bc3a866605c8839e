using BackupAppliance.Replication.Transport;
using NATS.Client;

namespace BackupAppliance.Transport.Nats;

/// <summary>
/// One subscription, pumped by a thread of its own. NATS.Client 0.8.0 runs each asynchronous
/// subscription's delivery loop as a plain task that blocks a thread-pool thread for the
/// subscription's whole life; a few of those starve the pool on a small machine (events and awaits
/// then stall for seconds). So we take a synchronous subscription and pump it here, in arrival
/// order. The client resends the subscription after a reconnect.
/// </summary>
internal sealed class NatsSubscription : IAsyncDisposable
{
    // How long a pump waits for a message before it looks whether it was stopped.
    private const int WakeMilliseconds = 1000;

    private readonly ISyncSubscription _subscription;
    private readonly string _subject;
    private readonly TransportMessageHandler _handler;
    private readonly TransportStateFeed _feed;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _pump;
    private int _disposed;

    public NatsSubscription(ISyncSubscription subscription, string subject, TransportMessageHandler handler, TransportStateFeed feed)
    {
        _subscription = subscription;
        _subject = subject;
        _handler = handler;
        _feed = feed;
        _pump = new Thread(Pump) { IsBackground = true, Name = "nats-sub " + subject };
        _pump.Start();
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
            return;
        await _stop.CancelAsync();
        try
        {
            _subscription.Unsubscribe();
        }
        catch (Exception e) when (e is NATSException or IOException or ObjectDisposedException)
        {
            // The connection is closed or its server gone (a broken pipe while writing UNSUB, when
            // nats-server stops together with us): nothing is subscribed any more.
        }
    }

    private void Pump()
    {
        try
        {
            PumpUntilStopped();
        }
        catch (Exception e)
        {
            // Never let an exception end the process from a thread of ours.
            _feed.Report(TransportState.Error, $"the subscription to '{_subject}' stopped: {e.Message}");
        }
    }

    private void PumpUntilStopped()
    {
        while (!_stop.IsCancellationRequested)
        {
            Msg? m;
            try
            {
                m = _subscription.NextMessage(WakeMilliseconds);
            }
            catch (NATSTimeoutException)
            {
                continue;
            }
            catch (NATSSlowConsumerException)
            {
                _feed.Report(TransportState.Error, $"slow consumer on '{_subject}': the client dropped messages");
                continue;
            }
            catch (NATSException)
            {
                return; // unsubscribed, or the connection is closed
            }
            if (m is null)
                return; // 0.8.0 hands out null when its queue is closed under it
            Deliver(m);
        }
    }

    private void Deliver(Msg m)
    {
        if (_stop.IsCancellationRequested)
            return;
        try
        {
            var pending = _handler(new TransportMessage(m.Subject, m.Reply, m.Data ?? []), _stop.Token);
            if (!pending.IsCompletedSuccessfully)
            {
                // This thread is ours and only pumps this subscription: waiting here is the back
                // pressure (the client queues up to its pending limits, then drops and reports a
                // slow consumer).
                pending.AsTask().GetAwaiter().GetResult();
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // unsubscribed while the handler ran
        }
        catch (Exception e)
        {
            _feed.Report(TransportState.Error, $"the handler of '{_subject}' failed on '{m.Subject}': {e.Message}");
        }
    }
}
