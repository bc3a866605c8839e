using System.Net.Sockets;
using System.Reflection;
using NATS.Client;

namespace BackupAppliance.Transport.Nats;

/// <summary>What a live NATS socket is set to, as the kernel reports it (Linux doubles requested sizes).</summary>
public readonly record struct NatsSocketSettings(int SendBufferSize, int ReceiveBufferSize, bool NoDelay);

/// <summary>
/// The one place that reaches into NATS.Client 0.8.0: its <c>Connection.conn</c> (a private
/// TCPConnection) holds the <c>client</c> TcpClient whose buffers the client fixes at 32/64 KiB,
/// which measured ~2 MiB/s for 1 MiB payloads. Every (re)connection makes a new TcpClient, so the
/// transport calls <see cref="Apply"/> after each. If a client update renames these fields, this
/// fails loudly (<see cref="NatsSocketTuningException"/>) instead of silently running slow.
/// </summary>
public static class NatsSocketTuning
{
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;

    // Reflection handles of a fixed client version: looked up once, never changed.
    private static readonly FieldInfo? TcpConnectionField = typeof(Connection).GetField("conn", Private);
    private static readonly FieldInfo? TcpClientField = TcpConnectionField?.FieldType.GetField("client", Private);

    /// <summary>Sets the live socket's buffers and NoDelay and returns what the kernel then reports.</summary>
    public static NatsSocketSettings Apply(IConnection connection, int bufferSize, bool noDelay)
    {
        var client = LiveClient(connection);
        client.SendBufferSize = bufferSize;
        client.ReceiveBufferSize = bufferSize;
        client.NoDelay = noDelay;
        return Read(client);
    }

    /// <summary>
    /// Whether <paramref name="settings"/> hold at least <paramref name="bufferSize"/>. Linux reports
    /// twice the request, capped by net.core.wmem_max / rmem_max, so less than asked means a cap.
    /// </summary>
    public static bool Reaches(NatsSocketSettings settings, int bufferSize) =>
        settings.SendBufferSize >= bufferSize && settings.ReceiveBufferSize >= bufferSize;

    /// <summary>The live socket's settings now.</summary>
    public static NatsSocketSettings Inspect(IConnection connection) => Read(LiveClient(connection));

    private static NatsSocketSettings Read(TcpClient client) => new(client.SendBufferSize, client.ReceiveBufferSize, client.NoDelay);

    private static TcpClient LiveClient(IConnection connection)
    {
        if (TcpConnectionField is null || TcpClientField is null || TcpClientField.FieldType != typeof(TcpClient))
            throw new NatsSocketTuningException($"NATS.Client {typeof(Connection).Assembly.GetName().Version} has no private Connection.conn.client TcpClient (written for 0.8.0): socket buffers cannot be tuned");
        var tcp = TcpConnectionField.GetValue(connection) ?? throw new NatsSocketTuningException("the NATS connection has no TCP connection (not connected)");
        var client = (TcpClient?)TcpClientField.GetValue(tcp) ?? throw new NatsSocketTuningException("the NATS connection has no TcpClient (not connected)");
        return client;
    }
}

/// <summary>The socket tuning could not be applied; the message says why.</summary>
public sealed class NatsSocketTuningException(string message) : Exception(message);
