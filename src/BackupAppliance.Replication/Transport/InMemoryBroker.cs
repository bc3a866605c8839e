using System.Collections.Immutable;

namespace BackupAppliance.Replication.Transport;

/// <summary>
/// A message bus in memory with core-NATS semantics, for tests of the protocol: every connection
/// (<see cref="Connect"/>) sees the messages published by any connection on the subjects it
/// subscribed to. Faults can be injected: <see cref="DropWhere"/> loses messages, and
/// <see cref="InMemoryTransport.Disconnect"/> cuts one connection.
/// </summary>
public sealed class InMemoryBroker
{
    private readonly TimeProvider _time;
    private readonly object _gate = new();
    private ImmutableArray<InMemoryTransport> _connections = ImmutableArray<InMemoryTransport>.Empty;
    private Func<TransportMessage, bool>? _drop;
    private long _dropped;

    public InMemoryBroker(TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
    }

    /// <summary>Messages lost on purpose so far (<see cref="DropWhere"/>).</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>A new connection to this broker.</summary>
    public InMemoryTransport Connect()
    {
        var t = new InMemoryTransport(this, _time);
        lock (_gate)
            _connections = _connections.Add(t);
        return t;
    }

    /// <summary>From now on, every published message for which <paramref name="drop"/> is true is lost (null: none).</summary>
    public void DropWhere(Func<TransportMessage, bool>? drop)
    {
        Volatile.Write(ref _drop, drop);
    }

    internal void Remove(InMemoryTransport connection)
    {
        lock (_gate)
            _connections = _connections.Remove(connection);
    }

    internal void Route(TransportMessage message)
    {
        var drop = Volatile.Read(ref _drop);
        if (drop is not null && drop(message))
        {
            Interlocked.Increment(ref _dropped);
            return;
        }
        ImmutableArray<InMemoryTransport> connections;
        lock (_gate)
            connections = _connections;
        foreach (var c in connections)
            c.Deliver(message);
    }
}
