using System.Net;
using System.Net.Sockets;
using BackupAppliance.Core;
using BackupAppliance.Nbd.Tests.Support;

namespace BackupAppliance.Nbd.Tests;

/// <summary>Listener lifecycle: Unix sockets, restarts, stop and dispose.</summary>
public sealed class ServerTests
{
    private static NbdVolumeExports Exports() => new(new MemoryBlockVolume("v", 1 << 20));

    [Fact]
    public async Task Stale_unix_socket_is_replaced_and_removed_on_stop()
    {
        using var dir = new TempDir();
        string path = dir.File("s.sock");
        // Bound but never listening, as a crashed server leaves it (disposing it later only unlinks the path again).
        using var stale = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        stale.Bind(new UnixDomainSocketEndPoint(path));
        Assert.True(File.Exists(path));

        var server = new NbdServer(Exports(), new NbdServerOptions { TcpEndPoint = null, UnixSocketPath = path });
        await server.StartAsync();
        Assert.Null(server.TcpEndPoint);
        var info = await Tool.RunOkAsync("nbdinfo", $"nbd+unix:///v?socket={path}");
        Assert.Contains("export-size: 1048576", info.Stdout);
        await server.DisposeAsync();
        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task Unix_socket_in_use_is_not_taken_over()
    {
        using var dir = new TempDir();
        string path = dir.File("s.sock");
        await using var first = new NbdServer(Exports(), new NbdServerOptions { TcpEndPoint = null, UnixSocketPath = path });
        await first.StartAsync();
        await using var second = new NbdServer(Exports(), new NbdServerOptions { TcpEndPoint = null, UnixSocketPath = path });
        await Assert.ThrowsAsync<IOException>(() => second.StartAsync());
        Assert.Contains("export-size: 1048576", (await Tool.RunOkAsync("nbdinfo", $"nbd+unix:///v?socket={path}")).Stdout);
    }

    [Fact]
    public async Task Regular_file_at_the_socket_path_is_left_alone()
    {
        using var dir = new TempDir();
        string path = dir.File("s.sock");
        await File.WriteAllTextAsync(path, "not a socket");
        await using var server = new NbdServer(Exports(), new NbdServerOptions { TcpEndPoint = null, UnixSocketPath = path });
        await Assert.ThrowsAsync<IOException>(() => server.StartAsync());
        Assert.Equal("not a socket", await File.ReadAllTextAsync(path));
    }

    [Fact]
    public async Task Tcp_port_in_use_fails_start()
    {
        await using var first = new NbdServer(Exports(), new NbdServerOptions { TcpEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        await first.StartAsync();
        await using var second = new NbdServer(Exports(), new NbdServerOptions { TcpEndPoint = first.TcpEndPoint });
        await Assert.ThrowsAsync<SocketException>(() => second.StartAsync());
    }

    [Fact]
    public async Task Start_twice_throws_and_stop_is_idempotent()
    {
        var server = new NbdServer(Exports(), new NbdServerOptions { TcpEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        await server.StartAsync();
        Assert.NotEqual(0, server.TcpEndPoint!.Port);
        await Assert.ThrowsAsync<InvalidOperationException>(() => server.StartAsync());
        await server.StopAsync();
        await server.StopAsync();
        await server.DisposeAsync();
        // Nothing listens any more.
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await Assert.ThrowsAsync<SocketException>(() => probe.ConnectAsync(server.TcpEndPoint));
    }

    [Fact]
    public async Task Stop_closes_idle_connections_in_both_phases()
    {
        await using var server = await TestServer.StartAsync(new MemoryBlockVolume("v", 1 << 20));
        await using var haggling = await RawNbdClient.HandshakeAsync(server.Port);
        var (transmitting, _) = await RawNbdClient.OpenAsync(server.Port, "v", structured: true);
        await using var _t = transmitting;
        await server.Server.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(await haggling.ClosedByServerAsync());
        Assert.True(await transmitting.ClosedByServerAsync());
    }
}
