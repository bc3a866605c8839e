using System.Text.RegularExpressions;
using BackupAppliance.Transport.Nats;

namespace BackupAppliance.Hosting;

/// <summary>The <c>nats</c> section of a daemon's configuration (see config/README.md).</summary>
public sealed record NatsSection
{
    /// <summary>Servers, tried in turn.</summary>
    public List<string> Urls { get; set; } = ["nats://127.0.0.1:4222"];
    public string? User { get; init; }
    public string? Password { get; init; }
    /// <summary>A file holding the password (first line), so the config itself holds no secret.</summary>
    public string? PasswordFile { get; init; }
    public string? Token { get; init; }
    public string? TokenFile { get; init; }
    public bool Tls { get; init; }
    public string? TlsCaFile { get; init; }
    public string? TlsCertFile { get; init; }
    public string? TlsKeyFile { get; init; }
    public bool TlsVerifyServerName { get; set; } = true;
    public double ConnectTimeoutSeconds { get; set; } = 5;
    public double PingIntervalSeconds { get; set; } = 0.5;
    public int MaxPingsOut { get; set; } = 2;
    public double ReconnectWaitSeconds { get; set; } = 0.5;

    /// <summary>The transport options; throws <see cref="ConfigException"/> naming <c>nats.…</c>.</summary>
    public NatsTransportOptions ToOptions(string file, string clientName)
    {
        if (Password is not null && PasswordFile is not null)
            throw new ConfigException(file, "nats.password_file", "set either password or password_file, not both");
        if (Token is not null && TokenFile is not null)
            throw new ConfigException(file, "nats.token_file", "set either token or token_file, not both");
        var options = new NatsTransportOptions
        {
            Urls = Urls,
            Name = clientName,
            User = User,
            Password = Password ?? Secret(file, "nats.password_file", Resolve(file, PasswordFile)),
            Token = Token ?? Secret(file, "nats.token_file", Resolve(file, TokenFile)),
            Tls = Tls,
            TlsCaFile = Resolve(file, TlsCaFile),
            TlsCertFile = Resolve(file, TlsCertFile),
            TlsKeyFile = Resolve(file, TlsKeyFile),
            TlsVerifyServerName = TlsVerifyServerName,
            ConnectTimeout = ConfigRules.Seconds(file, "nats.connect_timeout_seconds", ConnectTimeoutSeconds),
            PingInterval = ConfigRules.Seconds(file, "nats.ping_interval_seconds", PingIntervalSeconds),
            MaxPingsOut = MaxPingsOut,
            ReconnectWait = ConfigRules.Seconds(file, "nats.reconnect_wait_seconds", ReconnectWaitSeconds, allowZero: true),
        };
        try
        {
            options.Validate();
        }
        catch (NatsOptionsException e)
        {
            string problem = e.Message.Replace($"NATS option {e.ParamName}: ", "").Split(" (Parameter", 2)[0];
            // The transport speaks of its .NET names (TlsCertFile); the file's reader knows tls_cert_file.
            problem = Regex.Replace(problem, @"\b(?:Urls|User|Password|Token|Tls|TlsCaFile|TlsCertFile|TlsKeyFile|MaxPingsOut)\b", m => SnakeCase(m.Value));
            throw new ConfigException(file, "nats." + SnakeCase(e.ParamName ?? ""), problem, e);
        }
        return options;
    }

    private static string? Resolve(string file, string? path) =>
        string.IsNullOrEmpty(path) ? path : ConfigFile.ResolvePath(file, path);

    private static string? Secret(string file, string option, string? path)
    {
        if (path is null)
            return null;
        try
        {
            string value = File.ReadLines(path).FirstOrDefault()?.Trim() ?? "";
            return value.Length > 0 ? value : throw new ConfigException(file, option, $"{path} is empty");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException(file, option, $"cannot read {path}: {e.Message}", e);
        }
    }

    private static string SnakeCase(string name) => name switch
    {
        "Urls" => "urls",
        "User" => "user",
        "Password" => "password",
        "Token" => "token",
        "TlsCaFile" => "tls_ca_file",
        "TlsCertFile" => "tls_cert_file",
        "TlsKeyFile" => "tls_key_file",
        "MaxPingsOut" => "max_pings_out",
        _ => System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName(name),
    };
}
