using System.Text;

namespace BackupAppliance.Transport.Nats;

/// <summary>
/// How to reach the NATS servers (bindable from configuration). Defaults are the measured ones:
/// pings every 500 ms with 2 outstanding notice a dead server in about a second, and 4 MiB socket
/// buffers make large payloads fast (TOOLCHAIN.md, "NATS").
/// </summary>
public sealed record NatsTransportOptions
{
    /// <summary>Servers to try, as <c>nats://host:port</c>; one connection at a time.</summary>
    public IReadOnlyList<string> Urls { get; init; } = ["nats://127.0.0.1:4222"];

    /// <summary>The client name the server shows in its monitoring.</summary>
    public string? Name { get; init; }

    /// <summary>User for user/password authentication (needs <see cref="Password"/>; not with <see cref="Token"/>).</summary>
    public string? User { get; init; }

    public string? Password { get; init; }

    /// <summary>Token authentication (not with <see cref="User"/>).</summary>
    public string? Token { get; init; }

    /// <summary>Require TLS. The server's certificate is checked against <see cref="TlsCaFile"/>, or the system's roots without it.</summary>
    public bool Tls { get; init; }

    /// <summary>PEM file of the certificate authorities that may sign the server's certificate.</summary>
    public string? TlsCaFile { get; init; }

    /// <summary>PEM client certificate, for servers that verify clients (needs <see cref="TlsKeyFile"/>).</summary>
    public string? TlsCertFile { get; init; }

    /// <summary>PEM private key of <see cref="TlsCertFile"/>.</summary>
    public string? TlsKeyFile { get; init; }

    /// <summary>Whether the server's certificate must name the host of the URL (turn off only for tests).</summary>
    public bool TlsVerifyServerName { get; init; } = true;

    /// <summary>How long a connection attempt (TCP, TLS and the NATS handshake) may take.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How often the client pings the server.</summary>
    public TimeSpan PingInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Unanswered pings after which the server counts as dead.</summary>
    public int MaxPingsOut { get; init; } = 2;

    /// <summary>Pause between reconnect attempts to the same server.</summary>
    public TimeSpan ReconnectWait { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Reconnect attempts per server before giving up and closing; -1 tries for ever.</summary>
    public int MaxReconnects { get; init; } = -1;

    /// <summary>
    /// Send and receive buffer size of the TCP socket, set on every (re)connection; 0 leaves the
    /// client's own 32/64 KiB, which is slow for large payloads (kept for comparisons).
    /// </summary>
    public int SocketBufferSize { get; init; } = 4 * 1024 * 1024;

    /// <summary>Disable Nagle's algorithm on the socket (with <see cref="SocketBufferSize"/> above 0).</summary>
    public bool NoDelay { get; init; } = true;

    /// <summary>Largest socket buffer accepted (the kernel caps it anyway).</summary>
    public const int MaxSocketBufferSize = 256 * 1024 * 1024;

    // Options end up in logs and test names: never print the secrets.
    private bool PrintMembers(StringBuilder builder)
    {
        builder.Append($"Urls = [{string.Join(", ", Urls ?? [])}], Name = {Name}, User = {User}, ");
        builder.Append($"Password = {(Password is null ? "" : "(set)")}, Token = {(Token is null ? "" : "(set)")}, ");
        builder.Append($"Tls = {Tls}, TlsCaFile = {TlsCaFile}, TlsCertFile = {TlsCertFile}, TlsKeyFile = {TlsKeyFile}, TlsVerifyServerName = {TlsVerifyServerName}, ");
        builder.Append($"ConnectTimeout = {ConnectTimeout}, PingInterval = {PingInterval}, MaxPingsOut = {MaxPingsOut}, ");
        builder.Append($"ReconnectWait = {ReconnectWait}, MaxReconnects = {MaxReconnects}, SocketBufferSize = {SocketBufferSize}, NoDelay = {NoDelay}");
        return true;
    }

    /// <summary>Throws <see cref="NatsOptionsException"/> naming the first option that is wrong.</summary>
    public void Validate()
    {
        if (Urls is null || Urls.Count == 0)
            throw new NatsOptionsException(nameof(Urls), "at least one server URL is needed");
        for (int i = 0; i < Urls.Count; i++)
            ValidateUrl(i, Urls[i]);
        if (User is not null && Token is not null)
            throw new NatsOptionsException(nameof(Token), "set either User/Password or Token, not both");
        if (User is not null && string.IsNullOrEmpty(User))
            throw new NatsOptionsException(nameof(User), "is empty");
        if (User is not null && Password is null)
            throw new NatsOptionsException(nameof(Password), "is required with User");
        if (Password is not null && User is null)
            throw new NatsOptionsException(nameof(User), "is required with Password");
        if (Token is not null && string.IsNullOrEmpty(Token))
            throw new NatsOptionsException(nameof(Token), "is empty");
        ValidateTls();
        RequirePositive(nameof(ConnectTimeout), ConnectTimeout);
        RequirePositive(nameof(PingInterval), PingInterval);
        if (MaxPingsOut < 1)
            throw new NatsOptionsException(nameof(MaxPingsOut), $"must be at least 1 (is {MaxPingsOut})");
        if (ReconnectWait < TimeSpan.Zero || ReconnectWait.TotalMilliseconds > int.MaxValue)
            throw new NatsOptionsException(nameof(ReconnectWait), $"must be zero or positive and fit in int milliseconds (is {ReconnectWait})");
        if (MaxReconnects < -1)
            throw new NatsOptionsException(nameof(MaxReconnects), $"must be -1 (for ever), 0 or more (is {MaxReconnects})");
        if (SocketBufferSize < 0 || SocketBufferSize > MaxSocketBufferSize)
            throw new NatsOptionsException(nameof(SocketBufferSize), $"must be 0 (leave the client's) up to {MaxSocketBufferSize} bytes (is {SocketBufferSize})");
    }

    private static void ValidateUrl(int index, string url)
    {
        string name = $"{nameof(Urls)}[{index}]";
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri))
            throw new NatsOptionsException(name, $"'{url}' is not an absolute URL like nats://host:4222");
        if (uri.Scheme != "nats")
            throw new NatsOptionsException(name, $"'{url}' has scheme '{uri.Scheme}'; use nats:// (TLS is the Tls option)");
        if (string.IsNullOrEmpty(uri.Host))
            throw new NatsOptionsException(name, $"'{url}' names no host");
        if (!string.IsNullOrEmpty(uri.UserInfo))
            throw new NatsOptionsException(name, $"'{uri.Host}' carries credentials in the URL; use User/Password or Token");
        if (uri.AbsolutePath.Length > 1 || uri.Query.Length > 0)
            throw new NatsOptionsException(name, $"'{url}' has a path or query, which NATS does not use");
    }

    private void ValidateTls()
    {
        bool anyTlsFile = TlsCaFile is not null || TlsCertFile is not null || TlsKeyFile is not null;
        if (anyTlsFile && !Tls)
            throw new NatsOptionsException(nameof(Tls), "TLS files are set but Tls is off");
        RequireFile(nameof(TlsCaFile), TlsCaFile);
        RequireFile(nameof(TlsCertFile), TlsCertFile);
        RequireFile(nameof(TlsKeyFile), TlsKeyFile);
        if (TlsCertFile is not null && TlsKeyFile is null)
            throw new NatsOptionsException(nameof(TlsKeyFile), "is required with TlsCertFile");
        if (TlsKeyFile is not null && TlsCertFile is null)
            throw new NatsOptionsException(nameof(TlsCertFile), "is required with TlsKeyFile");
    }

    private static void RequireFile(string option, string? path)
    {
        if (path is null)
            return;
        if (path.Length == 0)
            throw new NatsOptionsException(option, "is empty");
        if (!File.Exists(path))
            throw new NatsOptionsException(option, $"file '{path}' does not exist");
    }

    private static void RequirePositive(string option, TimeSpan value)
    {
        if (value <= TimeSpan.Zero || value.TotalMilliseconds > int.MaxValue)
            throw new NatsOptionsException(option, $"must be positive and fit in int milliseconds (is {value})");
    }
}
