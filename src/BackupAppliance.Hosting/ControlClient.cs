using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace BackupAppliance.Hosting;

/// <summary>The client side of <see cref="ControlServer"/>.</summary>
public static class ControlClient
{
    /// <summary>
    /// Sends one request and returns the last reply line; progress lines go to
    /// <paramref name="onProgress"/>. Throws <see cref="DaemonNotRunningException"/> when nothing
    /// listens, and <see cref="InvalidOperationException"/> with the daemon's text for an error reply.
    /// </summary>
    public static async Task<JsonObject> AskAsync(string socketPath, JsonObject request, Action<JsonObject>? onProgress, CancellationToken cancellationToken)
    {
        if (!File.Exists(socketPath))
            throw new DaemonNotRunningException(socketPath);
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try { await s.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken).ConfigureAwait(false); }
        catch (SocketException) { throw new DaemonNotRunningException(socketPath); }
        await using var stream = new NetworkStream(s, ownsSocket: false);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { NewLine = "\n", AutoFlush = true };
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await writer.WriteLineAsync(request.ToJsonString()).ConfigureAwait(false);
        while (true)
        {
            string? line = await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false);
            if (line is null)
                throw new IOException($"the daemon at {socketPath} closed the connection without a reply (did it stop?)");
            JsonObject reply;
            try { reply = JsonNode.Parse(line) as JsonObject ?? throw new JsonException("not an object"); }
            catch (JsonException e) { throw new IOException($"the daemon at {socketPath} sent a malformed reply: {e.Message}", e); }
            if (reply["progress"] is JsonObject progress)
            {
                onProgress?.Invoke(progress);
                continue;
            }
            if (reply["error"] is { } error)
                throw new InvalidOperationException(error.GetValue<string>());
            return reply;
        }
    }
}

/// <summary>No daemon listens on the control socket.</summary>
public sealed class DaemonNotRunningException(string socketPath)
    : Exception($"no daemon is listening on {socketPath} (is it running, and is this its configuration?)")
{
    public string SocketPath { get; } = socketPath;
}
