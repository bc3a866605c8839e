namespace BackupAppliance.Transport.Nats.Tests;

/// <summary>Every wrong option is refused before any connection, naming the option.</summary>
public sealed class NatsOptionsTests
{
    private static readonly string ExistingFile = typeof(NatsOptionsTests).Assembly.Location;

    public static TheoryData<string, NatsTransportOptions> BadOptions() => new()
    {
        { "Urls", new NatsTransportOptions { Urls = [] } },
        { "Urls[0]", new NatsTransportOptions { Urls = ["127.0.0.1:4222"] } },
        { "Urls[1]", new NatsTransportOptions { Urls = ["nats://127.0.0.1:4222", "http://127.0.0.1:4222"] } },
        { "Urls[0]", new NatsTransportOptions { Urls = ["tls://127.0.0.1:4222"] } },
        { "Urls[0]", new NatsTransportOptions { Urls = ["nats://user:pw@127.0.0.1:4222"] } },
        { "Urls[0]", new NatsTransportOptions { Urls = ["nats://127.0.0.1:4222/path"] } },
        { "Password", new NatsTransportOptions { User = "agent" } },
        { "User", new NatsTransportOptions { Password = "pw" } },
        { "User", new NatsTransportOptions { User = "", Password = "pw" } },
        { "Token", new NatsTransportOptions { User = "agent", Password = "pw", Token = "t" } },
        { "Token", new NatsTransportOptions { Token = "" } },
        { "Tls", new NatsTransportOptions { TlsCaFile = ExistingFile } },
        { "TlsCaFile", new NatsTransportOptions { Tls = true, TlsCaFile = "/nonexistent/ca.pem" } },
        { "TlsKeyFile", new NatsTransportOptions { Tls = true, TlsCertFile = ExistingFile } },
        { "TlsCertFile", new NatsTransportOptions { Tls = true, TlsKeyFile = ExistingFile } },
        { "ConnectTimeout", new NatsTransportOptions { ConnectTimeout = TimeSpan.Zero } },
        { "PingInterval", new NatsTransportOptions { PingInterval = TimeSpan.FromMilliseconds(-1) } },
        { "MaxPingsOut", new NatsTransportOptions { MaxPingsOut = 0 } },
        { "ReconnectWait", new NatsTransportOptions { ReconnectWait = TimeSpan.FromSeconds(-1) } },
        { "MaxReconnects", new NatsTransportOptions { MaxReconnects = -2 } },
        { "SocketBufferSize", new NatsTransportOptions { SocketBufferSize = -1 } },
        { "SocketBufferSize", new NatsTransportOptions { SocketBufferSize = NatsTransportOptions.MaxSocketBufferSize + 1 } },
    };

    [Theory]
    [MemberData(nameof(BadOptions))]
    public async Task Bad_options_are_refused_naming_the_option(string option, NatsTransportOptions options)
    {
        var e = Assert.Throws<NatsOptionsException>(options.Validate);
        Assert.Equal(option, e.ParamName);
        Assert.StartsWith($"NATS option {option}:", e.Message);
        // Connecting validates first: no server is needed to be refused.
        var again = await Assert.ThrowsAsync<NatsOptionsException>(() => NatsTransport.ConnectAsync(options));
        Assert.Equal(option, again.ParamName);
    }

    [Fact]
    public async Task A_CA_file_that_is_not_PEM_is_refused_naming_it()
    {
        var options = new NatsTransportOptions { Tls = true, TlsCaFile = ExistingFile };
        options.Validate(); // it exists; its content is judged when connecting
        var e = await Assert.ThrowsAsync<NatsOptionsException>(() => NatsTransport.ConnectAsync(options));
        Assert.Equal("TlsCaFile", e.ParamName);
    }

    [Fact]
    public void Secrets_are_not_printed()
    {
        string text = new NatsTransportOptions { User = "agent1", Password = "hunter2-pw", Urls = ["nats://10.0.0.1:4222"] }.ToString();
        Assert.Contains("agent1", text);
        Assert.Contains("nats://10.0.0.1:4222", text);
        Assert.DoesNotContain("hunter2-pw", text);
        Assert.DoesNotContain("tok-secret", new NatsTransportOptions { Token = "tok-secret" }.ToString());
    }

    [Fact]
    public void The_defaults_are_valid_and_the_measured_ones()
    {
        var o = new NatsTransportOptions();
        o.Validate();
        Assert.Equal(TimeSpan.FromMilliseconds(500), o.PingInterval);
        Assert.Equal(2, o.MaxPingsOut);
        Assert.Equal(4 * 1024 * 1024, o.SocketBufferSize);
        Assert.True(o.NoDelay);
        Assert.True(o.TlsVerifyServerName);
    }
}
