namespace BackupAppliance.Replication.Transport;

/// <summary>What happened to a transport's connection.</summary>
public enum TransportState
{
    /// <summary>The first connection is up.</summary>
    Connected,

    /// <summary>The connection was lost; the transport is trying to reconnect.</summary>
    Disconnected,

    /// <summary>The connection is back and subscriptions are restored.</summary>
    Reconnected,

    /// <summary>The transport is closed for good (disposed, or reconnecting gave up).</summary>
    Closed,

    /// <summary>An asynchronous error that did not change the connection (slow consumer, handler failure).</summary>
    Error,
}

/// <summary>A connection change or asynchronous error, with a reason for people and logs.</summary>
public sealed record TransportStateChange(TransportState State, string Reason, DateTimeOffset At);
