using BackupAppliance.TestSupport;
using System.Threading.Channels;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Transport.Nats.Tests.Support;
using Xunit.Abstractions;

namespace BackupAppliance.Transport.Nats.Tests;

/// <summary>
/// The NATS transport against its own nats-server per test, which the tests stop, kill with SIGKILL,
/// freeze and restart: socket tuning, dead-server detection, reconnect with resubscription.
/// </summary>
public sealed class NatsConnectionTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);
    private const int Tuned = 4 * 1024 * 1024;
    private NatsServer _server = null!;

    public async Task InitializeAsync() => _server = await NatsServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    private Task<NatsTransport> ConnectAsync(NatsTransportOptions? options = null) =>
        NatsTransport.ConnectAsync((options ?? new NatsTransportOptions()) with { Urls = [_server.Url] });

    [Fact]
    public async Task The_socket_buffers_are_tuned_on_the_live_socket()
    {
        await using var t = await ConnectAsync();
        var s = t.InspectSocket();
        Assert.True(s.SendBufferSize >= Tuned && s.ReceiveBufferSize >= Tuned, $"live socket: {s}");
        Assert.True(s.NoDelay);
        Assert.True(t.SocketTuningInEffect, t.SocketTuningProblem);
        Assert.Equal(1, t.SocketTuningCount);
        await AssertKernelBuffersAsync(atLeast: Tuned);
    }

    [Fact]
    public async Task Without_tuning_the_client_keeps_its_small_buffers()
    {
        // The control: shows the tuning tests can fail, and why the tuning exists.
        await using var t = await ConnectAsync(new NatsTransportOptions { SocketBufferSize = 0 });
        var s = t.InspectSocket();
        Assert.True(s.SendBufferSize < 1024 * 1024 && s.ReceiveBufferSize < 1024 * 1024, $"untuned socket: {s}");
        Assert.Equal(0, t.SocketTuningCount);
        var kernel = await SingleClientAsync();
        Assert.True(kernel.SendBuffer < 1024 * 1024, $"ss: {kernel}");
    }

    [Fact]
    public async Task The_tuning_is_applied_again_after_a_reconnect()
    {
        await using var t = await ConnectAsync();
        using var log = new StateLog(t);
        await _server.StopAsync();
        await log.WaitForAsync(TransportState.Disconnected, Bound);
        await _server.StartAgainAsync();
        await log.WaitForAsync(TransportState.Reconnected, TimeSpan.FromSeconds(30));
        var s = t.InspectSocket();
        Assert.True(s.SendBufferSize >= Tuned && s.ReceiveBufferSize >= Tuned && s.NoDelay, $"live socket after reconnect: {s}");
        Assert.Equal(2, t.SocketTuningCount);
        await AssertKernelBuffersAsync(atLeast: Tuned);
    }

    [Fact]
    public async Task A_killed_server_is_noticed_within_seconds()
    {
        await using var t = await ConnectAsync();
        using var log = new StateLog(t);
        await _server.KillAsync();
        var (change, after) = await log.WaitForAsync(TransportState.Disconnected, Bound);
        output.WriteLine($"kill -9 noticed after {after.TotalMilliseconds:F0} ms: {change.Reason}");
        Assert.False(t.IsConnected);
    }

    [Fact]
    public async Task Closing_right_after_the_server_died_does_not_throw()
    {
        // A daemon stopped together with its nats-server (a machine shutting down) unsubscribes and
        // closes on a socket whose peer is gone before the client noticed: broken pipes there are
        // the end of a connection, not an error of the stop (the receiver exited with code 1).
        var t = await ConnectAsync();
        var subscription = await t.SubscribeAsync("bapp.test.close", (_, _) => ValueTask.CompletedTask);
        await t.FlushAsync(Bound);
        await _server.KillAsync();
        try
        {
            // Writes into the dead socket, so that the next write meets a broken pipe.
            await t.PublishAsync("bapp.test.close", new byte[64 * 1024]);
        }
        catch (TransportException)
        {
            // Lost while writing: expected, and not what this test is about.
        }
        await subscription.DisposeAsync();
        await t.DisposeAsync();
        Assert.False(t.IsConnected);
    }

    [Fact]
    public async Task A_frozen_server_is_noticed_by_the_pings()
    {
        // SIGSTOP keeps the sockets open: only unanswered pings (500 ms, 2 out) can tell.
        await using var t = await ConnectAsync();
        using var log = new StateLog(t);
        await _server.FreezeAsync();
        try
        {
            var (change, after) = await log.WaitForAsync(TransportState.Disconnected, Bound);
            output.WriteLine($"frozen server noticed after {after.TotalMilliseconds:F0} ms: {change.Reason}");
        }
        finally
        {
            await _server.ThawAsync();
        }
    }

    [Fact]
    public async Task After_a_restart_subscriptions_are_restored_and_messages_flow_again()
    {
        await using var subscriber = await ConnectAsync();
        await using var publisher = await ConnectAsync();
        using var log = new StateLog(subscriber);
        using var publisherLog = new StateLog(publisher);
        var inbox = Channel.CreateUnbounded<TransportMessage>();
        await using var sub = await subscriber.SubscribeAsync("bapp.a1.vol.reply", inbox.Writer);
        await subscriber.FlushAsync(Bound);
        await publisher.PublishAsync("bapp.a1.vol.reply", "before"u8.ToArray());
        Assert.Equal("before"u8.ToArray(), (await ReadAsync(inbox)).Payload.ToArray());

        await _server.StopAsync();
        await log.WaitForAsync(TransportState.Disconnected, Bound);
        await _server.StartAgainAsync();
        await log.WaitForAsync(TransportState.Reconnected, TimeSpan.FromSeconds(30));
        await publisherLog.WaitForAsync(TransportState.Reconnected, TimeSpan.FromSeconds(30));
        await subscriber.FlushAsync(Bound); // the resent SUB has reached the server

        var payload = Payloads.Random(1 << 20, seed: 42);
        await publisher.PublishAsync("bapp.a1.vol.reply", payload);
        var m = await ReadAsync(inbox);
        Assert.Equal(Payloads.Sha256(payload), Payloads.Sha256(m.Payload));
        Assert.True(subscriber.IsConnected);
    }

    [Fact]
    public async Task When_reconnecting_gives_up_the_transport_closes_with_a_reason()
    {
        await using var t = await ConnectAsync(new NatsTransportOptions { MaxReconnects = 1, ReconnectWait = TimeSpan.FromMilliseconds(50) });
        using var log = new StateLog(t);
        await _server.KillAsync();
        var (closed, _) = await log.WaitForAsync(TransportState.Closed, TimeSpan.FromSeconds(30));
        Assert.Contains("gave up", closed.Reason);
        var e = await Assert.ThrowsAsync<TransportException>(async () => await t.PublishAsync("a.b", "x"u8.ToArray()));
        Assert.Contains("closed", e.Message);
    }

    [Fact]
    public async Task A_payload_beyond_max_payload_is_refused_naming_it()
    {
        await using var t = await ConnectAsync();
        var e = await Assert.ThrowsAsync<TransportException>(async () => await t.PublishAsync("big.x", new byte[9 * 1024 * 1024]));
        Assert.Contains("max_payload", e.Message);
        Assert.True(t.IsConnected);
    }

    [Fact]
    public async Task No_server_is_a_clear_error_naming_the_url()
    {
        await _server.StopAsync();
        var e = await Assert.ThrowsAsync<TransportException>(() => ConnectAsync());
        Assert.Contains(_server.Url, e.Message);
        Assert.Contains("could not connect", e.Message);
    }

    private async Task AssertKernelBuffersAsync(int atLeast)
    {
        var kernel = await SingleClientAsync();
        output.WriteLine($"ss: {kernel}");
        Assert.True(kernel.SendBuffer >= atLeast && kernel.ReceiveBuffer >= atLeast, $"ss reports {kernel}");
    }

    private async Task<SocketStats.Buffers> SingleClientAsync()
    {
        var clients = await SocketStats.ClientsOfPortAsync(_server.Port);
        return Assert.Single(clients);
    }

    private static async Task<TransportMessage> ReadAsync(Channel<TransportMessage> inbox)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        return await inbox.Reader.ReadAsync(cts.Token);
    }
}
