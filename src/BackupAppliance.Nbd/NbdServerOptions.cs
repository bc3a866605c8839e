using System.Net;

namespace BackupAppliance.Nbd;

/// <summary>
/// How an <see cref="NbdServer"/> listens and what it accepts. Set <see cref="TcpEndPoint"/>,
/// <see cref="UnixSocketPath"/> or both; a TCP port of 0 binds an ephemeral port
/// (read it back from <see cref="NbdServer.TcpEndPoint"/>).
/// </summary>
public sealed record NbdServerOptions
{
    /// <summary>The IANA-registered NBD port.</summary>
    public const int DefaultPort = 10809;

    /// <summary>Default and upper bound of the advertised maximum payload (2^25, the size every client accepts).</summary>
    public const int DefaultMaxRequestSize = 32 * 1024 * 1024;

    /// <summary>TCP endpoint to listen on; <c>null</c> for no TCP listener.</summary>
    public IPEndPoint? TcpEndPoint { get; init; } = new(IPAddress.Loopback, DefaultPort);

    /// <summary>Unix-domain socket path to listen on; <c>null</c> for none.</summary>
    public string? UnixSocketPath { get; init; }

    /// <summary>
    /// Largest READ or WRITE payload accepted (and advertised as the maximum payload); a longer
    /// request is a protocol violation and closes the connection. From 4 KiB to 32 MiB.
    /// </summary>
    public int MaxRequestSize { get; init; } = DefaultMaxRequestSize;

    /// <summary>
    /// Reads larger than 64 KiB over TCP, page-aligned and at most 1 MiB, go from the volume's file
    /// to the socket without a copy in the server (spliced through a pipe) where the volume lends
    /// its bytes; otherwise they are read into a buffer and sent. Off: always copy.
    /// </summary>
    public bool LendReads { get; init; } = true;

    /// <summary>Requests a connection may have in flight before the server stops reading from it.</summary>
    public int MaxInFlightPerConnection { get; init; } = 16;

    /// <summary>
    /// Data bytes of a connection's requests in flight (WRITE payloads, READ buffers) before the
    /// server stops reading from it until some are answered: what one connection can make the
    /// server hold, however large and many its requests. At least <see cref="MaxRequestSize"/>.
    /// </summary>
    public long MaxInFlightBytesPerConnection { get; init; } = 64L << 20;

    /// <summary>Clock for retry pauses in the accept loop.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>
    /// Called with unexpected errors: a volume throwing something other than a
    /// <c>VolumeException</c> (the client gets EIO and the connection goes on), or a bug that ends a
    /// connection. Client disconnects and protocol violations are not reported. Must not throw;
    /// may be called from several connections at once.
    /// </summary>
    public Action<Exception>? ConnectionError { get; init; }

    internal void Validate()
    {
        if (TcpEndPoint is null && string.IsNullOrEmpty(UnixSocketPath))
            throw new ArgumentException("NBD server needs a TCP endpoint or a Unix socket path");
        if (MaxRequestSize is < 4096 or > DefaultMaxRequestSize)
            throw new ArgumentOutOfRangeException(nameof(MaxRequestSize), MaxRequestSize, "expected 4096..33554432 bytes");
        if (MaxInFlightPerConnection is < 1 or > 1024)
            throw new ArgumentOutOfRangeException(nameof(MaxInFlightPerConnection), MaxInFlightPerConnection, "expected 1..1024");
        if (MaxInFlightBytesPerConnection < MaxRequestSize)
            throw new ArgumentOutOfRangeException(nameof(MaxInFlightBytesPerConnection), MaxInFlightBytesPerConnection, $"expected at least the maximum request size ({MaxRequestSize} bytes)");
    }
}
