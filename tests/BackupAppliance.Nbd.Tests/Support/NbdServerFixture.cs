using System.Collections.Concurrent;
using System.Net;
using BackupAppliance.Core;

namespace BackupAppliance.Nbd.Tests.Support;

/// <summary>
/// An in-process <see cref="NbdServer"/> on 127.0.0.1 port 0 (and a Unix socket) with in-memory
/// exports: "disk" (1 GiB, 64 KiB blocks, the default), "small" (64 MiB), "ro" (16 MiB read-only,
/// 1 MiB of 0x5a at its start) and "scratch" (64 MiB, for tests that may write anything).
/// Each test class that takes it as a class fixture gets its own server and volumes.
/// </summary>
public sealed class NbdServerFixture : IAsyncLifetime
{
    public const long DiskSize = 1L << 30;
    public const long SmallSize = 64L << 20;
    public const long RoSize = 16L << 20;
    public const long ScratchSize = 64L << 20;

    private readonly TempDir _dir = new();

    public NbdServerFixture()
    {
        Disk = new InstrumentedVolume(new MemoryBlockVolume("disk", DiskSize, 65536));
        Small = new MemoryBlockVolume("small", SmallSize, 65536);
        RoBacking = new MemoryBlockVolume("ro", RoSize, 65536);
        Scratch = new InstrumentedVolume(new MemoryBlockVolume("scratch", ScratchSize, 65536));
        Exports = new NbdVolumeExports();
        Exports.Add(Disk, "test disk");
        Exports.Add(Small, "small disk");
        Exports.Add(new ReadOnlyView(RoBacking), "read-only disk");
        Exports.Add(Scratch, "scratch disk");
        Server = new NbdServer(Exports, new NbdServerOptions
        {
            TcpEndPoint = new IPEndPoint(IPAddress.Loopback, 0),
            UnixSocketPath = _dir.File("nbd.sock"),
            ConnectionError = e => Faults.Enqueue(e),
        });
    }

    public InstrumentedVolume Disk { get; }
    public MemoryBlockVolume Small { get; }
    public MemoryBlockVolume RoBacking { get; }
    public InstrumentedVolume Scratch { get; }
    public NbdVolumeExports Exports { get; }
    public NbdServer Server { get; }

    /// <summary>Unexpected errors the server reported; tests assert there are none.</summary>
    public ConcurrentQueue<Exception> Faults { get; } = new();

    public int Port => Server.TcpEndPoint!.Port;

    public string Uri(string export) => $"nbd://127.0.0.1:{Port}/{export}";

    public string UnixUri(string export) => $"nbd+unix:///{export}?socket={Server.UnixSocketPath}";

    public async Task InitializeAsync()
    {
        await RoBacking.WriteAsync(0, Enumerable.Repeat((byte)0x5a, 1 << 20).ToArray(), false, CancellationToken.None);
        await Server.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Server.DisposeAsync();
        _dir.Dispose();
    }

    public void AssertNoFaults() =>
        Assert.True(Faults.IsEmpty, "server reported unexpected errors:\n" + string.Join("\n", Faults));
}
