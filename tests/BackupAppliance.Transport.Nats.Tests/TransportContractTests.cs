using System.Text;
using System.Threading.Channels;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Transport.Nats.Tests.Support;

namespace BackupAppliance.Transport.Nats.Tests;

/// <summary>
/// What every <see cref="ITransport"/> must do, run against NATS (a real nats-server) and the
/// in-memory transport alike. Tests never wait for a time to pass: they wait for a message that is
/// known to come after the ones checked (each subscription delivers in order), within a generous bound.
/// </summary>
public abstract class TransportContractTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    /// <summary>A fresh connection to the same bus for each call.</summary>
    protected abstract Task<ITransport> ConnectAsync();

    [Fact]
    public async Task Payloads_of_one_MiB_arrive_whole_and_in_order()
    {
        await using var sender = await ConnectAsync();
        await using var receiver = await ConnectAsync();
        var inbox = Channel.CreateUnbounded<TransportMessage>();
        await using (await receiver.SubscribeAsync("bapp.a1.vol.data", inbox.Writer))
        {
            await receiver.FlushAsync(Bound);
            var sent = Enumerable.Range(0, 8).Select(i => Payloads.Random(1 << 20, seed: 100 + i)).ToArray();
            foreach (var p in sent)
                await sender.PublishAsync("bapp.a1.vol.data", p);
            await sender.FlushAsync(Bound);
            for (int i = 0; i < sent.Length; i++)
            {
                var m = await ReadAsync(inbox);
                Assert.Equal("bapp.a1.vol.data", m.Subject);
                Assert.Null(m.ReplyTo);
                Assert.Equal(1 << 20, m.Payload.Length);
                Assert.Equal(Payloads.Sha256(sent[i]), Payloads.Sha256(m.Payload));
            }
        }
    }

    [Fact]
    public async Task The_callers_buffer_may_be_reused_as_soon_as_publish_returns()
    {
        await using var t = await ConnectAsync();
        var inbox = Channel.CreateUnbounded<TransportMessage>();
        await using (await t.SubscribeAsync("reuse.x", inbox.Writer))
        {
            await t.FlushAsync(Bound);
            var buffer = Payloads.Random(64 * 1024, seed: 7);
            string first = Payloads.Sha256(buffer);
            await t.PublishAsync("reuse.x", buffer);
            Array.Fill(buffer, (byte)0xEE);
            await t.PublishAsync("reuse.x", buffer.AsMemory(1, 1000));
            Assert.Equal(first, Payloads.Sha256((await ReadAsync(inbox)).Payload));
            var second = await ReadAsync(inbox);
            Assert.Equal(1000, second.Payload.Length);
            Assert.All(second.Payload.ToArray(), b => Assert.Equal(0xEE, b));
        }
    }

    [Fact]
    public async Task Wildcards_match_one_token_or_the_rest()
    {
        await using var t = await ConnectAsync();
        var star = Channel.CreateUnbounded<TransportMessage>();
        var rest = Channel.CreateUnbounded<TransportMessage>();
        await using var s1 = await t.SubscribeAsync("bapp.*.vol1.ctl", star.Writer);
        await using var s2 = await t.SubscribeAsync("bapp.agent1.>", rest.Writer);
        await t.FlushAsync(Bound);
        string[] subjects =
        [
            "bapp.agent1.vol1.ctl", // both
            "bapp.agent2.vol1.ctl", // star only
            "bapp.agent1.vol2.data", // rest only
            "bapp.agent1", // neither: '>' needs at least one more token
            "bapp.agent1.vol1.ctl.extra", // rest only
            "bapp.agent2.vol1.data", // neither
            "other.agent1.vol1.ctl", // neither
        ];
        foreach (var s in subjects)
            await t.PublishAsync(s, Encoding.UTF8.GetBytes(s));
        // Matches both, and comes last: once it arrives, every earlier match has.
        await t.PublishAsync("bapp.agent1.vol1.ctl", "end"u8.ToArray());
        Assert.Equal(["bapp.agent1.vol1.ctl", "bapp.agent2.vol1.ctl", "end"], await DrainUntilEndAsync(star));
        Assert.Equal(["bapp.agent1.vol1.ctl", "bapp.agent1.vol2.data", "bapp.agent1.vol1.ctl.extra", "end"], await DrainUntilEndAsync(rest));
    }

    [Fact]
    public async Task A_request_gets_its_reply()
    {
        await using var requester = await ConnectAsync();
        await using var responder = await ConnectAsync();
        await using (await responder.SubscribeAsync("bapp.a1.vol.ctl", async (m, ct) =>
        {
            Assert.NotNull(m.ReplyTo);
            await responder.PublishAsync(m.ReplyTo!, Encoding.UTF8.GetBytes("sha:" + Payloads.Sha256(m.Payload)), cancellationToken: ct);
        }))
        {
            await responder.FlushAsync(Bound);
            var request = Payloads.Random(300_000, seed: 5);
            var reply = await requester.RequestAsync("bapp.a1.vol.ctl", request, Bound);
            Assert.Equal("sha:" + Payloads.Sha256(request), Encoding.UTF8.GetString(reply.Payload.Span));
            var second = await requester.RequestAsync("bapp.a1.vol.ctl", "x"u8.ToArray(), Bound);
            Assert.Equal("sha:" + Payloads.Sha256("x"u8.ToArray()), Encoding.UTF8.GetString(second.Payload.Span));
        }
    }

    [Fact]
    public async Task A_request_without_responder_times_out_naming_the_subject()
    {
        await using var t = await ConnectAsync();
        var e = await Assert.ThrowsAsync<TimeoutException>(async () => await t.RequestAsync("nobody.listens", "?"u8.ToArray(), TimeSpan.FromMilliseconds(200)));
        Assert.Contains("nobody.listens", e.Message);
    }

    [Fact]
    public async Task A_request_timeout_must_be_positive()
    {
        await using var t = await ConnectAsync();
        var e = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await t.RequestAsync("a.b", "x"u8.ToArray(), TimeSpan.Zero));
        Assert.Equal("timeout", e.ParamName);
    }

    [Fact]
    public async Task A_reply_subject_travels_with_a_publish()
    {
        await using var t = await ConnectAsync();
        var inbox = Channel.CreateUnbounded<TransportMessage>();
        await using (await t.SubscribeAsync("with.reply", inbox.Writer))
        {
            await t.FlushAsync(Bound);
            await t.PublishAsync("with.reply", "p"u8.ToArray(), replyTo: "bapp.a1.vol.reply");
            var m = await ReadAsync(inbox);
            Assert.Equal("bapp.a1.vol.reply", m.ReplyTo);
            Assert.Equal("p"u8.ToArray(), m.Payload.ToArray());
        }
    }

    [Fact]
    public async Task After_unsubscribing_nothing_more_arrives()
    {
        await using var t = await ConnectAsync();
        var gone = Channel.CreateUnbounded<TransportMessage>();
        var kept = Channel.CreateUnbounded<TransportMessage>();
        var goneSub = await t.SubscribeAsync("unsub.x", gone.Writer);
        await using var keptSub = await t.SubscribeAsync("unsub.x", kept.Writer);
        await t.FlushAsync(Bound);
        await t.PublishAsync("unsub.x", "1"u8.ToArray());
        Assert.Equal("1"u8.ToArray(), (await ReadAsync(gone)).Payload.ToArray());
        Assert.Equal("1"u8.ToArray(), (await ReadAsync(kept)).Payload.ToArray());
        await goneSub.DisposeAsync();
        await t.FlushAsync(Bound);
        await t.PublishAsync("unsub.x", "2"u8.ToArray());
        Assert.Equal("2"u8.ToArray(), (await ReadAsync(kept)).Payload.ToArray());
        Assert.False(gone.Reader.TryRead(out _), "a message arrived after unsubscribing");
    }

    [Fact]
    public async Task A_handler_that_throws_is_reported_and_the_subscription_goes_on()
    {
        await using var t = await ConnectAsync();
        using var log = new StateLog(t);
        var inbox = Channel.CreateUnbounded<TransportMessage>();
        await using (await t.SubscribeAsync("faulty.x", async (m, ct) =>
        {
            if (m.Payload.Span.SequenceEqual("boom"u8))
                throw new InvalidDataException("handler refused boom");
            await inbox.Writer.WriteAsync(m, ct);
        }))
        {
            await t.FlushAsync(Bound);
            await t.PublishAsync("faulty.x", "boom"u8.ToArray());
            await t.PublishAsync("faulty.x", "fine"u8.ToArray());
            Assert.Equal("fine"u8.ToArray(), (await ReadAsync(inbox)).Payload.ToArray());
            var (error, _) = await log.WaitForAsync(TransportState.Error, Bound);
            Assert.Contains("handler refused boom", error.Reason);
            Assert.Contains("faulty.x", error.Reason);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("a..b")]
    [InlineData(".a")]
    [InlineData("a.")]
    [InlineData("a b")]
    [InlineData("a.*")]
    [InlineData("a.>")]
    [InlineData("a.b*")]
    public async Task Bad_publish_subjects_are_refused_and_nothing_is_sent(string subject)
    {
        await using var t = await ConnectAsync();
        var all = Channel.CreateUnbounded<TransportMessage>();
        await using (await t.SubscribeAsync(">", all.Writer))
        {
            await t.FlushAsync(Bound);
            var e = await Assert.ThrowsAnyAsync<ArgumentException>(async () => await t.PublishAsync(subject, "x"u8.ToArray()));
            Assert.Equal("subject", e.ParamName);
            await t.PublishAsync("sentinel", "end"u8.ToArray());
            var m = await ReadAsync(all);
            Assert.Equal("sentinel", m.Subject);
        }
    }

    [Theory]
    [InlineData("a.>.b")]
    [InlineData("a.b>")]
    [InlineData("a..*")]
    [InlineData("*a")]
    [InlineData("a\tb")]
    public async Task Bad_subscription_subjects_are_refused(string subject)
    {
        await using var t = await ConnectAsync();
        var e = await Assert.ThrowsAnyAsync<ArgumentException>(async () => await t.SubscribeAsync(subject, (_, _) => ValueTask.CompletedTask));
        Assert.Equal("subject", e.ParamName);
    }

    [Fact]
    public async Task A_closed_transport_refuses_work_and_says_closed()
    {
        var t = await ConnectAsync();
        using var log = new StateLog(t);
        Assert.True(t.IsConnected);
        await t.DisposeAsync();
        var (closed, _) = await log.WaitForAsync(TransportState.Closed, Bound);
        Assert.Contains("closed", closed.Reason);
        Assert.False(t.IsConnected);
        var e = await Assert.ThrowsAsync<TransportException>(async () => await t.PublishAsync("a.b", "x"u8.ToArray()));
        Assert.Contains("closed", e.Message);
        await Assert.ThrowsAsync<TransportException>(async () => await t.SubscribeAsync("a.b", (_, _) => ValueTask.CompletedTask));
        await t.DisposeAsync(); // twice is harmless
    }

    protected static async Task<TransportMessage> ReadAsync(Channel<TransportMessage> inbox)
    {
        using var cts = new CancellationTokenSource(Bound);
        try
        {
            return await inbox.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new Xunit.Sdk.XunitException($"no message within {Bound.TotalSeconds} s");
        }
    }

    private static async Task<List<string>> DrainUntilEndAsync(Channel<TransportMessage> inbox)
    {
        var got = new List<string>();
        while (true)
        {
            string text = Encoding.UTF8.GetString((await ReadAsync(inbox)).Payload.Span);
            got.Add(text);
            if (text == "end")
                return got;
        }
    }
}

public sealed class InMemoryTransportContractTests : TransportContractTests
{
    private readonly InMemoryBroker _broker = new();

    protected override Task<ITransport> ConnectAsync() => Task.FromResult<ITransport>(_broker.Connect());
}

public sealed class NatsTransportContractTests(NatsServerFixture fixture) : TransportContractTests, IClassFixture<NatsServerFixture>
{
    protected override async Task<ITransport> ConnectAsync() =>
        await NatsTransport.ConnectAsync(new NatsTransportOptions { Urls = [fixture.Server.Url] });
}
