using System.Text;
using System.Threading.Channels;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Transport.Nats.Tests.Support;

namespace BackupAppliance.Transport.Nats.Tests;

/// <summary>The faults the in-memory bus can inject for protocol tests: loss and a cut connection.</summary>
public sealed class InMemoryFaultTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Messages_matching_the_loss_filter_are_dropped_and_counted()
    {
        var broker = new InMemoryBroker();
        await using var t = broker.Connect();
        var inbox = Channel.CreateUnbounded<TransportMessage>();
        await using var sub = await t.SubscribeAsync("loss.>", inbox.Writer);
        broker.DropWhere(m => m.Payload.Span[0] % 3 == 0);
        for (byte i = 0; i < 10; i++)
            await t.PublishAsync("loss.x", new[] { i });
        broker.DropWhere(null);
        await t.PublishAsync("loss.end", new byte[] { 255 });
        var got = new List<byte>();
        while (true)
        {
            using var cts = new CancellationTokenSource(Bound);
            var m = await inbox.Reader.ReadAsync(cts.Token);
            if (m.Subject == "loss.end")
                break;
            got.Add(m.Payload.Span[0]);
        }
        Assert.Equal(new byte[] { 1, 2, 4, 5, 7, 8 }, got);
        Assert.Equal(4, broker.Dropped);
    }

    [Fact]
    public async Task A_cut_connection_loses_traffic_both_ways_and_keeps_its_subscriptions()
    {
        var broker = new InMemoryBroker();
        await using var agent = broker.Connect();
        await using var receiver = broker.Connect();
        using var log = new StateLog(receiver);
        var inbox = Channel.CreateUnbounded<TransportMessage>();
        await using var sub = await receiver.SubscribeAsync("bapp.a.v.data", inbox.Writer);

        receiver.Disconnect("test cut");
        var (down, _) = await log.WaitForAsync(TransportState.Disconnected, Bound);
        Assert.Equal("test cut", down.Reason);
        Assert.False(receiver.IsConnected);
        await agent.PublishAsync("bapp.a.v.data", "lost in"u8.ToArray());
        await receiver.PublishAsync("bapp.a.v.data", "lost out"u8.ToArray()); // no error, like NATS: sending is not delivery
        await Assert.ThrowsAsync<TransportException>(async () => await receiver.FlushAsync(Bound));

        receiver.Reconnect();
        await log.WaitForAsync(TransportState.Reconnected, Bound);
        await agent.PublishAsync("bapp.a.v.data", "after"u8.ToArray());
        using var cts = new CancellationTokenSource(Bound);
        var m = await inbox.Reader.ReadAsync(cts.Token);
        Assert.Equal("after", Encoding.UTF8.GetString(m.Payload.Span));
        Assert.False(inbox.Reader.TryRead(out _));
    }
}
