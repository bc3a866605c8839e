using System.Collections.Immutable;

namespace BackupAppliance.Replication.Transport;

/// <summary>
/// The <see cref="ITransport.StateChanges"/> stream of a transport: observers are called in the
/// order they subscribed, on the thread that reports; after <see cref="Complete"/> new observers get
/// the closing change and completion at once.
/// </summary>
public sealed class TransportStateFeed : IObservable<TransportStateChange>
{
    private readonly TimeProvider _time;
    private readonly object _gate = new();
    private ImmutableArray<IObserver<TransportStateChange>> _observers = ImmutableArray<IObserver<TransportStateChange>>.Empty;
    private TransportStateChange? _final;

    public TransportStateFeed(TimeProvider time)
    {
        _time = time;
    }

    public IDisposable Subscribe(IObserver<TransportStateChange> observer)
    {
        ArgumentNullException.ThrowIfNull(observer);
        TransportStateChange? final;
        lock (_gate)
        {
            final = _final;
            if (final is null)
                _observers = _observers.Add(observer);
        }
        if (final is not null)
        {
            observer.OnNext(final);
            observer.OnCompleted();
            return Unsubscriber.None;
        }
        return new Unsubscriber(this, observer);
    }

    /// <summary>Tells every observer; an observer that throws does not stop the others.</summary>
    public void Report(TransportState state, string reason)
    {
        var change = new TransportStateChange(state, reason, _time.GetUtcNow());
        ImmutableArray<IObserver<TransportStateChange>> observers;
        lock (_gate)
        {
            if (_final is not null)
                return;
            observers = _observers;
        }
        foreach (var o in observers)
        {
            try
            {
                o.OnNext(change);
            }
            catch (Exception)
            {
                // An observer's bug must not take down the transport's reader thread.
            }
        }
    }

    /// <summary>Reports <see cref="TransportState.Closed"/> once and completes the stream.</summary>
    public void Complete(string reason)
    {
        var change = new TransportStateChange(TransportState.Closed, reason, _time.GetUtcNow());
        ImmutableArray<IObserver<TransportStateChange>> observers;
        lock (_gate)
        {
            if (_final is not null)
                return;
            _final = change;
            observers = _observers;
            _observers = ImmutableArray<IObserver<TransportStateChange>>.Empty;
        }
        foreach (var o in observers)
        {
            try
            {
                o.OnNext(change);
                o.OnCompleted();
            }
            catch (Exception)
            {
                // as in Report
            }
        }
    }

    private void Remove(IObserver<TransportStateChange> observer)
    {
        lock (_gate)
            _observers = _observers.Remove(observer);
    }

    private sealed class Unsubscriber(TransportStateFeed? feed, IObserver<TransportStateChange>? observer) : IDisposable
    {
        public static readonly Unsubscriber None = new(null, null);

        public void Dispose()
        {
            if (feed is not null && observer is not null)
                feed.Remove(observer);
        }
    }
}
