using System.Collections.Concurrent;
using System.Net;
using BackupAppliance.Core;

namespace BackupAppliance.Nbd.Tests.Support;

/// <summary>A server of its own for one test, over the volumes it is given (the first is the default export).</summary>
public sealed class TestServer : IAsyncDisposable
{
    private TestServer(NbdServer server) => Server = server;

    public NbdServer Server { get; }
    public ConcurrentQueue<Exception> Faults { get; } = new();
    public int Port => Server.TcpEndPoint!.Port;

    public static async Task<TestServer> StartAsync(IEnumerable<IBlockVolume> volumes, int maxRequestSize = NbdServerOptions.DefaultMaxRequestSize, int inFlight = 16, bool lendReads = true, long inFlightBytes = 64L << 20)
    {
        TestServer? self = null;
        var server = new NbdServer(new NbdVolumeExports(volumes), new NbdServerOptions
        {
            TcpEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            MaxRequestSize = maxRequestSize,
            MaxInFlightPerConnection = inFlight,
            LendReads = lendReads,
            MaxInFlightBytesPerConnection = inFlightBytes,
            ConnectionError = e => self!.Faults.Enqueue(e),
        });
        self = new TestServer(server);
        await server.StartAsync();
        return self;
    }

    public static Task<TestServer> StartAsync(params IBlockVolume[] volumes) => StartAsync((IEnumerable<IBlockVolume>)volumes);

    public ValueTask DisposeAsync() => Server.DisposeAsync();
}
