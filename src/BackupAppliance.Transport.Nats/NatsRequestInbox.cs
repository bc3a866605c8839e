using System.Collections.Concurrent;
using BackupAppliance.Replication.Transport;

namespace BackupAppliance.Transport.Nats;

/// <summary>
/// Replies to this transport's requests: one wildcard subscription (<c>&lt;inbox&gt;.*</c>) for all
/// of them, each request waiting on its own token.
/// </summary>
internal sealed class NatsRequestInbox(string prefix)
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource<TransportMessage>> _waiting = new();
    private long _next;

    public string Subject => prefix + ".*";

    public (string ReplyTo, Task<TransportMessage> Reply) Open()
    {
        string replyTo = prefix + "." + Interlocked.Increment(ref _next);
        var reply = new TaskCompletionSource<TransportMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _waiting[replyTo] = reply;
        return (replyTo, reply.Task);
    }

    public void Forget(string replyTo) => _waiting.TryRemove(replyTo, out _);

    public ValueTask OnReply(TransportMessage message, CancellationToken cancellationToken)
    {
        // A late or unknown reply (its request timed out) is dropped.
        if (_waiting.TryRemove(message.Subject, out var waiter))
            waiter.TrySetResult(message);
        return ValueTask.CompletedTask;
    }
}
