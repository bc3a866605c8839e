using BackupAppliance.TestSupport;
using System.Threading.Channels;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Transport.Nats.Tests.Support;

namespace BackupAppliance.Transport.Nats.Tests;

/// <summary>User/password and token authentication, and TLS with certificates made by openssl.</summary>
public sealed class NatsSecurityTests
{
    [Fact]
    public async Task User_and_password_connect_and_wrong_ones_fail_naming_authentication()
    {
        await using var server = await NatsServer.StartAsync("authorization { user: agent1, password: \"s3cret pass\" }");
        await using (var ok = await NatsTransport.ConnectAsync(new NatsTransportOptions { Urls = [server.Url], User = "agent1", Password = "s3cret pass" }))
            await AssertRoundTripAsync(ok);

        var wrong = await Assert.ThrowsAsync<TransportException>(() => NatsTransport.ConnectAsync(new NatsTransportOptions { Urls = [server.Url], User = "agent1", Password = "guess" }));
        Assert.Contains("authentication failed", wrong.Message);
        Assert.Contains("user 'agent1'", wrong.Message);
        Assert.DoesNotContain("guess", wrong.Message);
        var none = await Assert.ThrowsAsync<TransportException>(() => NatsTransport.ConnectAsync(new NatsTransportOptions { Urls = [server.Url] }));
        Assert.Contains("authentication failed", none.Message);
    }

    [Fact]
    public async Task A_token_connects_and_a_wrong_one_fails_naming_authentication()
    {
        await using var server = await NatsServer.StartAsync("authorization { token: \"t0ken-for-agents\" }");
        await using (var ok = await NatsTransport.ConnectAsync(new NatsTransportOptions { Urls = [server.Url], Token = "t0ken-for-agents" }))
            await AssertRoundTripAsync(ok);
        var wrong = await Assert.ThrowsAsync<TransportException>(() => NatsTransport.ConnectAsync(new NatsTransportOptions { Urls = [server.Url], Token = "t0ken-wrong" }));
        Assert.Contains("authentication failed", wrong.Message);
        Assert.DoesNotContain("t0ken-wrong", wrong.Message);
    }

    [Fact]
    public async Task Tls_connects_with_the_CA_and_fails_without_it()
    {
        var dir = Directory.CreateTempSubdirectory("bapp-nats-tls-").FullName;
        var certs = await TestCertificates.CreateAsync(dir, "IP:127.0.0.1", "DNS:localhost");
        await using var server = await NatsServer.StartAsync(TlsBlock(certs, verifyClients: false), dir);
        var tls = new NatsTransportOptions { Urls = [server.Url], Tls = true, TlsCaFile = certs.CaFile };

        await using (var ok = await NatsTransport.ConnectAsync(tls))
        {
            await AssertRoundTripAsync(ok);
            Assert.True(ok.InspectSocket().SendBufferSize >= 4 * 1024 * 1024, "tuning applies under TLS too");
        }

        var wrongCa = await Assert.ThrowsAsync<TransportException>(() => NatsTransport.ConnectAsync(tls with { TlsCaFile = certs.OtherCaFile }));
        Assert.Contains("TLS", wrongCa.Message);
        Assert.Contains("not signed by a certificate authority in TlsCaFile", wrongCa.Message);

        var systemRoots = await Assert.ThrowsAsync<TransportException>(() => NatsTransport.ConnectAsync(tls with { TlsCaFile = null }));
        Assert.Contains("not trusted by the system's certificate authorities", systemRoots.Message);

        var plain = await Assert.ThrowsAsync<TransportException>(() => NatsTransport.ConnectAsync(new NatsTransportOptions { Urls = [server.Url] }));
        Assert.Contains("TLS", plain.Message);
    }

    [Fact]
    public async Task The_server_name_is_verified_unless_turned_off()
    {
        var dir = Directory.CreateTempSubdirectory("bapp-nats-tls-").FullName;
        var certs = await TestCertificates.CreateAsync(dir, "DNS:replica.example");
        await using var server = await NatsServer.StartAsync(TlsBlock(certs, verifyClients: false), dir);
        var tls = new NatsTransportOptions { Urls = [server.Url], Tls = true, TlsCaFile = certs.CaFile };

        var e = await Assert.ThrowsAsync<TransportException>(() => NatsTransport.ConnectAsync(tls));
        Assert.Contains("does not name the host", e.Message);
        await using var ok = await NatsTransport.ConnectAsync(tls with { TlsVerifyServerName = false });
        await AssertRoundTripAsync(ok);
    }

    [Fact]
    public async Task A_server_that_verifies_clients_takes_our_client_certificate()
    {
        var dir = Directory.CreateTempSubdirectory("bapp-nats-tls-").FullName;
        var certs = await TestCertificates.CreateAsync(dir, "IP:127.0.0.1");
        await using var server = await NatsServer.StartAsync(TlsBlock(certs, verifyClients: true), dir);
        var tls = new NatsTransportOptions { Urls = [server.Url], Tls = true, TlsCaFile = certs.CaFile };

        await using (var ok = await NatsTransport.ConnectAsync(tls with { TlsCertFile = certs.ClientCertFile, TlsKeyFile = certs.ClientKeyFile }))
            await AssertRoundTripAsync(ok);
        await Assert.ThrowsAsync<TransportException>(() => NatsTransport.ConnectAsync(tls));
    }

    [Fact]
    public async Task Tls_wanted_from_a_plain_server_is_a_clear_error()
    {
        var dir = Directory.CreateTempSubdirectory("bapp-nats-tls-").FullName;
        var certs = await TestCertificates.CreateAsync(dir, "IP:127.0.0.1");
        await using var server = await NatsServer.StartAsync();
        var e = await Assert.ThrowsAsync<TransportException>(() => NatsTransport.ConnectAsync(new NatsTransportOptions { Urls = [server.Url], Tls = true, TlsCaFile = certs.CaFile }));
        Assert.Contains("does not offer TLS", e.Message);
        Directory.Delete(dir, recursive: true);
    }

    private static string TlsBlock(TestCertificates certs, bool verifyClients) =>
        $"tls {{\n  cert_file: \"{certs.ServerCertFile}\"\n  key_file: \"{certs.ServerKeyFile}\"\n  ca_file: \"{certs.CaFile}\"\n  verify: {(verifyClients ? "true" : "false")}\n  timeout: 5\n}}";

    private static async Task AssertRoundTripAsync(ITransport t)
    {
        var inbox = Channel.CreateUnbounded<TransportMessage>();
        await using (await t.SubscribeAsync("secure.x", inbox.Writer))
        {
            await t.FlushAsync(TimeSpan.FromSeconds(10));
            var payload = Payloads.Random(256 * 1024, seed: 9);
            await t.PublishAsync("secure.x", payload);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var m = await inbox.Reader.ReadAsync(cts.Token);
            Assert.Equal(Payloads.Sha256(payload), Payloads.Sha256(m.Payload));
        }
    }
}
