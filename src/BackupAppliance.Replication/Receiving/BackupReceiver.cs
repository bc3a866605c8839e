using System.Collections.Concurrent;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Receiving;

/// <summary>
/// The receiver's end of the replication protocol (PROTOCOL.md): listens on every agent's control
/// and data subjects, checks each frame against the protocol's rules and the volume's state in the
/// <see cref="IReplicaStore"/>, stages verified data, makes it durable, acknowledges, grants credit
/// and publishes a point at commit. Bad input of any kind gets an error reply and changes nothing;
/// the receiver does not stop on it. Volumes are handled independently; one volume's frames one at a time.
/// </summary>
public sealed class BackupReceiver : IAsyncDisposable
{
    private readonly ITransport _transport;
    private readonly IReplicaStore _store;
    private readonly TimeProvider _time;
    private readonly ReceiverCounters _counters = new();
    private readonly ConcurrentDictionary<(string Agent, string Volume), VolumeSession> _sessions = new();
    private readonly SemaphoreSlim _refusals = new(1, 1);
    private readonly FrameEncoder _refusalEncoder = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<IAsyncDisposable> _subscriptions = [];
    private bool _disposed;

    public BackupReceiver(ITransport transport, IReplicaStore store, ReceiverOptions? options = null, TimeProvider? time = null)
    {
        _transport = transport ?? throw new ArgumentNullException(nameof(transport));
        _store = store ?? throw new ArgumentNullException(nameof(store));
        Options = (options ?? ReceiverOptions.Default).Validate();
        _time = time ?? TimeProvider.System;
    }

    public ReceiverOptions Options { get; }

    /// <summary>The counters so far.</summary>
    public ReceiverStatistics Statistics => _counters.Snapshot();

    /// <summary>Subscribes to <c>bapp.*.*.ctl</c> and <c>bapp.*.*.data</c>; replies go to <c>bapp.&lt;agent&gt;.&lt;volume&gt;.reply</c>.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_subscriptions.Count > 0)
            throw new InvalidOperationException("the receiver is already started");
        _subscriptions.Add(await _transport.SubscribeAsync(ReplicationSubjects.AllControl, OnMessageAsync, cancellationToken));
        _subscriptions.Add(await _transport.SubscribeAsync(ReplicationSubjects.AllData, OnMessageAsync, cancellationToken));
    }

    /// <summary>Unsubscribes and closes open stagings (they stay in the store, to be resumed).</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
            return;
        _disposed = true;
        await _stopping.CancelAsync();
        foreach (var s in _subscriptions)
            await s.DisposeAsync();
        foreach (var session in _sessions.Values)
        {
            await session.Gate.WaitAsync();
            await session.DisposeAsync();
        }
        _sessions.Clear();
        _refusalEncoder.Dispose();
        _refusals.Dispose();
        _stopping.Dispose();
    }

    private async ValueTask OnMessageAsync(TransportMessage message, CancellationToken cancellationToken)
    {
        _counters.Received(message.Payload.Length);
        if (!ReplicationSubjects.TryParse(message.Subject, out var agent, out var volume, out var kind))
            return; // no reply subject to answer on
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        var token = linked.Token;
        bool keeps;
        try
        {
            keeps = _store.Keeps(agent, volume);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            await RefuseAsync(agent, volume, WireErrorCode.Internal, $"cannot tell whether {agent}/{volume} is kept: {e.Message}", message.Payload, token);
            return;
        }
        if (!keeps)
        {
            await RefuseAsync(agent, volume, WireErrorCode.UnknownVolume, $"this receiver keeps no backups of {agent}/{volume}", message.Payload, token);
            return;
        }
        var session = _sessions.GetOrAdd((agent, volume), key => new VolumeSession(key.Agent, key.Volume, _store, _transport, Options, _time, _counters));
        await session.Gate.WaitAsync(token);
        try
        {
            await session.HandleAsync(kind, message.Payload, token);
        }
        finally
        {
            session.Gate.Release();
        }
    }

    /// <summary>Answers a frame for a volume that has no session (nothing to change, so no volume state).</summary>
    private async ValueTask RefuseAsync(string agent, string volume, WireErrorCode code, string text, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        _counters.Error(code);
        await _refusals.WaitAsync(cancellationToken);
        try
        {
            var bytes = _refusalEncoder.Encode(0, new ErrorReply(code, VolumeSession.Clip(text), null, FrameDecoder.PeekSequence(payload.Span)));
            await _transport.PublishAsync(ReplicationSubjects.Reply(agent, volume), bytes, cancellationToken: cancellationToken);
        }
        catch (TransportException)
        {
            // lost like any reply
        }
        finally
        {
            _refusals.Release();
        }
    }
}
