using System.Threading.Channels;

namespace BackupAppliance.Replication.Transport;

/// <summary>Conveniences over any <see cref="ITransport"/>.</summary>
public static class TransportExtensions
{
    /// <summary>
    /// Subscribes and writes each message into <paramref name="writer"/>. A bounded channel that is
    /// full makes the subscription wait, which pushes back to the transport (NATS then counts the
    /// subscription as a slow consumer and drops, as the protocol expects it may).
    /// </summary>
    public static ValueTask<IAsyncDisposable> SubscribeAsync(this ITransport transport, string subject, ChannelWriter<TransportMessage> writer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(writer);
        return transport.SubscribeAsync(subject, (m, ct) => writer.TryWrite(m) ? ValueTask.CompletedTask : writer.WriteAsync(m, ct), cancellationToken);
    }

    /// <summary>An observer that calls <paramref name="onNext"/> for each change (for logs and tests).</summary>
    public static IDisposable Subscribe(this IObservable<TransportStateChange> changes, Action<TransportStateChange> onNext)
    {
        ArgumentNullException.ThrowIfNull(onNext);
        return changes.Subscribe(new ActionObserver(onNext));
    }

    private sealed class ActionObserver(Action<TransportStateChange> onNext) : IObserver<TransportStateChange>
    {
        public void OnCompleted()
        {
        }

        public void OnError(Exception error)
        {
        }

        public void OnNext(TransportStateChange value) => onNext(value);
    }
}
