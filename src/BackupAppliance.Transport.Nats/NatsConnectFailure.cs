using NATS.Client;

namespace BackupAppliance.Transport.Nats;

/// <summary>Turns what NATS.Client 0.8.0 throws on connect into a sentence that says what to fix.</summary>
internal static class NatsConnectFailure
{
    public static string Explain(NatsTransportOptions options, Exception e, string? tlsProblem)
    {
        string servers = string.Join(", ", options.Urls);
        string all = Messages(e);
        if (all.Contains("Authorization Violation", StringComparison.OrdinalIgnoreCase) || all.Contains("authorization", StringComparison.OrdinalIgnoreCase))
            return $"NATS authentication failed at {servers} ({Credentials(options)}): the server said '{all}'";
        if (tlsProblem is not null)
            return $"NATS TLS handshake with {servers} failed: {tlsProblem}";
        if (e is NATSSecureConnWantedException)
            return $"NATS TLS failed: Tls is on but the server at {servers} does not offer TLS";
        if (e is NATSSecureConnRequiredException)
            return $"NATS TLS failed: the server at {servers} requires TLS; turn the Tls option on";
        if (HasInner<System.Security.Authentication.AuthenticationException>(e))
            return $"NATS TLS handshake with {servers} failed: {all}";
        return $"could not connect to NATS at {servers}: {all}";
    }

    private static string Credentials(NatsTransportOptions options) =>
        options.User is not null ? $"user '{options.User}'" : options.Token is not null ? "token" : "no credentials";

    private static string Messages(Exception e)
    {
        var parts = new List<string>();
        for (var x = e; x is not null; x = x.InnerException)
            parts.Add(x.Message.Trim());
        return string.Join(" <- ", parts.Distinct());
    }

    private static bool HasInner<T>(Exception e)
        where T : Exception
    {
        for (var x = e; x is not null; x = x.InnerException)
        {
            if (x is T)
                return true;
        }
        return false;
    }
}
