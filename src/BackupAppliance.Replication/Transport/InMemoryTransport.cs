using System.Collections.Immutable;
using System.Threading.Channels;

namespace BackupAppliance.Replication.Transport;

/// <summary>
/// One connection to an <see cref="InMemoryBroker"/>. Like NATS: each subscription delivers in
/// order on its own task, messages published while this connection is cut are lost, subscriptions
/// survive a reconnect, a request without a responder waits the whole timeout.
/// </summary>
public sealed class InMemoryTransport : ITransport
{
    private readonly InMemoryBroker _broker;
    private readonly TimeProvider _time;
    private readonly TransportStateFeed _feed;
    private readonly object _gate = new();
    private ImmutableArray<Subscription> _subscriptions = ImmutableArray<Subscription>.Empty;
    private bool _connected = true;
    private bool _closed;
    private long _nextInbox;
    private readonly string _inboxPrefix = "_INBOX." + Guid.NewGuid().ToString("N");

    internal InMemoryTransport(InMemoryBroker broker, TimeProvider time)
    {
        _broker = broker;
        _time = time;
        _feed = new TransportStateFeed(time);
    }

    public bool IsConnected
    {
        get
        {
            lock (_gate)
                return _connected && !_closed;
        }
    }

    public IObservable<TransportStateChange> StateChanges => _feed;

    /// <summary>Cuts this connection (as a dead server would): until <see cref="Reconnect"/>, it neither sends nor receives.</summary>
    public void Disconnect(string reason)
    {
        lock (_gate)
        {
            ThrowIfClosed();
            if (!_connected)
                return;
            _connected = false;
        }
        _feed.Report(TransportState.Disconnected, reason);
    }

    /// <summary>Restores the connection; subscriptions are still in place.</summary>
    public void Reconnect()
    {
        lock (_gate)
        {
            ThrowIfClosed();
            if (_connected)
                return;
            _connected = true;
        }
        _feed.Report(TransportState.Reconnected, "reconnected to the in-memory broker");
    }

    public ValueTask PublishAsync(string subject, ReadOnlyMemory<byte> payload, string? replyTo = null, CancellationToken cancellationToken = default)
    {
        Subjects.ValidatePublish(subject);
        if (replyTo is not null)
            Subjects.ValidatePublish(replyTo, nameof(replyTo));
        cancellationToken.ThrowIfCancellationRequested();
        bool connected;
        lock (_gate)
        {
            ThrowIfClosed();
            connected = _connected;
        }
        // Lost like a publish into a dead connection; the protocol must notice by its acks.
        if (connected)
            _broker.Route(new TransportMessage(subject, replyTo, payload.ToArray()));
        return ValueTask.CompletedTask;
    }

    public ValueTask<IAsyncDisposable> SubscribeAsync(string subject, TransportMessageHandler handler, CancellationToken cancellationToken = default)
    {
        Subjects.ValidateSubscribe(subject);
        ArgumentNullException.ThrowIfNull(handler);
        cancellationToken.ThrowIfCancellationRequested();
        var sub = new Subscription(this, subject, handler);
        lock (_gate)
        {
            ThrowIfClosed();
            _subscriptions = _subscriptions.Add(sub);
        }
        sub.Start();
        return ValueTask.FromResult<IAsyncDisposable>(sub);
    }

    public async ValueTask<TransportMessage> RequestAsync(string subject, ReadOnlyMemory<byte> payload, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        Subjects.ValidatePublish(subject);
        if (timeout <= TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "a request timeout must be positive");
        string inbox = _inboxPrefix + "." + Interlocked.Increment(ref _nextInbox);
        var reply = new TaskCompletionSource<TransportMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using (await SubscribeAsync(inbox, (m, _) =>
        {
            reply.TrySetResult(m);
            return ValueTask.CompletedTask;
        }, cancellationToken))
        {
            await PublishAsync(subject, payload, inbox, cancellationToken);
            try
            {
                return await reply.Task.WaitAsync(timeout, _time, cancellationToken);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"no reply to a request on '{subject}' within {timeout.TotalMilliseconds:F0} ms");
            }
        }
    }

    public ValueTask FlushAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_gate)
        {
            ThrowIfClosed();
            if (!_connected)
                throw new TransportException("flush failed: the in-memory connection is cut");
        }
        // Routing is synchronous: whatever was published has reached the broker.
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        ImmutableArray<Subscription> subs;
        lock (_gate)
        {
            if (_closed)
                return;
            _closed = true;
            subs = _subscriptions;
            _subscriptions = ImmutableArray<Subscription>.Empty;
        }
        _broker.Remove(this);
        foreach (var s in subs)
            await s.StopAsync();
        _feed.Complete("closed by its owner");
    }

    internal void Deliver(TransportMessage message)
    {
        ImmutableArray<Subscription> subs;
        lock (_gate)
        {
            if (!_connected || _closed)
                return;
            subs = _subscriptions;
        }
        foreach (var s in subs)
        {
            if (Subjects.Matches(s.Pattern, message.Subject))
                s.Enqueue(message);
        }
    }

    private void Unsubscribe(Subscription sub)
    {
        lock (_gate)
            _subscriptions = _subscriptions.Remove(sub);
    }

    private void ThrowIfClosed()
    {
        if (_closed)
            throw new TransportException("the in-memory transport is closed");
    }

    private sealed class Subscription(InMemoryTransport owner, string pattern, TransportMessageHandler handler) : IAsyncDisposable
    {
        private readonly Channel<TransportMessage> _queue = Channel.CreateUnbounded<TransportMessage>(new UnboundedChannelOptions { SingleReader = true });
        private readonly CancellationTokenSource _stop = new();
        private Task _pump = Task.CompletedTask;
        private int _stopped;

        public string Pattern => pattern;

        public void Start() => _pump = Task.Run(PumpAsync);

        public void Enqueue(TransportMessage message) => _queue.Writer.TryWrite(message);

        public async ValueTask DisposeAsync()
        {
            owner.Unsubscribe(this);
            await StopAsync();
        }

        public async Task StopAsync()
        {
            if (Interlocked.Exchange(ref _stopped, 1) == 1)
                return;
            _queue.Writer.TryComplete();
            await _stop.CancelAsync();
            await _pump;
            _stop.Dispose();
        }

        private async Task PumpAsync()
        {
            try
            {
                await foreach (var m in _queue.Reader.ReadAllAsync(_stop.Token))
                {
                    try
                    {
                        await handler(m, _stop.Token);
                    }
                    catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (Exception e)
                    {
                        owner._feed.Report(TransportState.Error, $"the handler of '{pattern}' failed on '{m.Subject}': {e.Message}");
                    }
                }
            }
            catch (OperationCanceledException)
            {
                // stopped
            }
        }
    }
}
