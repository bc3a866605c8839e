namespace BackupAppliance.Replication.Transport;

/// <summary>
/// One received message. <see cref="Payload"/> belongs to the message (the transport never reuses
/// it), so a handler may keep it, e.g. by queueing the message.
/// </summary>
public readonly record struct TransportMessage(string Subject, string? ReplyTo, ReadOnlyMemory<byte> Payload);

/// <summary>Receives the messages of a subscription, one at a time.</summary>
public delegate ValueTask TransportMessageHandler(TransportMessage message, CancellationToken cancellationToken);
