using BackupAppliance.Replication.Transport;

namespace BackupAppliance.Replication.Tests.Support;

/// <summary>
/// Wraps an agent's transport and rewrites what it publishes: each payload goes through
/// <see cref="Tamper"/>, which returns the payloads actually sent (none, the same, several, damaged).
/// </summary>
public sealed class TamperingTransport(ITransport inner, Func<string, byte[], IEnumerable<byte[]>> tamper) : ITransport
{
    public Func<string, byte[], IEnumerable<byte[]>> Tamper { get; } = tamper;

    public bool IsConnected => inner.IsConnected;

    public IObservable<TransportStateChange> StateChanges => inner.StateChanges;

    public async ValueTask PublishAsync(string subject, ReadOnlyMemory<byte> payload, string? replyTo = null, CancellationToken cancellationToken = default)
    {
        foreach (var bytes in Tamper(subject, payload.ToArray()))
            await inner.PublishAsync(subject, bytes, replyTo, cancellationToken);
    }

    public ValueTask<IAsyncDisposable> SubscribeAsync(string subject, TransportMessageHandler handler, CancellationToken cancellationToken = default) =>
        inner.SubscribeAsync(subject, handler, cancellationToken);

    public ValueTask<TransportMessage> RequestAsync(string subject, ReadOnlyMemory<byte> payload, TimeSpan timeout, CancellationToken cancellationToken = default) =>
        inner.RequestAsync(subject, payload, timeout, cancellationToken);

    public ValueTask FlushAsync(TimeSpan timeout, CancellationToken cancellationToken = default) => inner.FlushAsync(timeout, cancellationToken);

    public ValueTask DisposeAsync() => ValueTask.CompletedTask; // the inner transport belongs to the rig
}
