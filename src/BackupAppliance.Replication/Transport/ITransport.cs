namespace BackupAppliance.Replication.Transport;

/// <summary>
/// The seam between the replication protocol and a message bus (NATS in production, memory in
/// tests). Core-NATS semantics: at-most-once delivery, no persistence, subjects with <c>*</c> and
/// <c>&gt;</c> wildcards. Nothing above this seam may rely on delivery: the protocol acknowledges
/// what it needs (PROTOCOL.md).
/// </summary>
public interface ITransport : IAsyncDisposable
{
    /// <summary>Whether the transport is connected now (it may still be reconnecting).</summary>
    bool IsConnected { get; }

    /// <summary>
    /// Connection changes (connected, disconnected, reconnected, closed) and asynchronous errors
    /// (a slow consumer, a handler that threw), each with a reason. Observers are called on a
    /// transport thread and must not block.
    /// </summary>
    IObservable<TransportStateChange> StateChanges { get; }

    /// <summary>
    /// Sends <paramref name="payload"/> to a subject (no wildcards). The transport copies or sends
    /// the bytes before returning, so the caller may reuse its buffer. Sending is not delivery.
    /// </summary>
    ValueTask PublishAsync(string subject, ReadOnlyMemory<byte> payload, string? replyTo = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Delivers every message whose subject matches <paramref name="subject"/> (wildcards allowed)
    /// to <paramref name="handler"/>, one at a time and in arrival order. A handler that throws is
    /// reported on <see cref="StateChanges"/> and the subscription goes on. Dispose the result to
    /// unsubscribe.
    /// </summary>
    ValueTask<IAsyncDisposable> SubscribeAsync(string subject, TransportMessageHandler handler, CancellationToken cancellationToken = default);

    /// <summary>
    /// Publishes with a fresh reply subject and returns the first reply. No responder is not
    /// detected early: the call waits the whole <paramref name="timeout"/>, then throws
    /// <see cref="TimeoutException"/>.
    /// </summary>
    ValueTask<TransportMessage> RequestAsync(string subject, ReadOnlyMemory<byte> payload, TimeSpan timeout, CancellationToken cancellationToken = default);

    /// <summary>
    /// Returns once everything published before has reached the server (a round trip), or throws
    /// <see cref="TimeoutException"/>.
    /// </summary>
    ValueTask FlushAsync(TimeSpan timeout, CancellationToken cancellationToken = default);
}
