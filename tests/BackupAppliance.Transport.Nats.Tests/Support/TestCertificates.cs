using System.Diagnostics;

namespace BackupAppliance.Transport.Nats.Tests.Support;

/// <summary>
/// A throw-away certificate authority and certificates made by the real <c>openssl</c> in a folder:
/// <c>ca.pem</c>, <c>server.pem</c>/<c>server.key</c> (for the given names), <c>client.pem</c>/<c>client.key</c>,
/// and an unrelated <c>other-ca.pem</c>.
/// </summary>
public sealed class TestCertificates
{
    private TestCertificates(string directory) => Directory = directory;

    public string Directory { get; }

    public string CaFile => Path.Combine(Directory, "ca.pem");

    public string OtherCaFile => Path.Combine(Directory, "other-ca.pem");

    public string ServerCertFile => Path.Combine(Directory, "server.pem");

    public string ServerKeyFile => Path.Combine(Directory, "server.key");

    public string ClientCertFile => Path.Combine(Directory, "client.pem");

    public string ClientKeyFile => Path.Combine(Directory, "client.key");

    /// <param name="serverNames">subjectAltName entries, e.g. <c>IP:127.0.0.1</c>, <c>DNS:localhost</c>.</param>
    public static async Task<TestCertificates> CreateAsync(string directory, params string[] serverNames)
    {
        var c = new TestCertificates(directory);
        await c.AuthorityAsync("ca", "bapp test CA");
        await c.AuthorityAsync("other-ca", "unrelated CA");
        await c.IssueAsync("server", "bapp test server", $"subjectAltName={string.Join(',', serverNames)}\nextendedKeyUsage=serverAuth\n");
        await c.IssueAsync("client", "bapp test client", "extendedKeyUsage=clientAuth\n");
        return c;
    }

    private Task AuthorityAsync(string name, string cn) => OpensslAsync(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", name + ".key", "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + cn,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");

    private async Task IssueAsync(string name, string cn, string extensions)
    {
        await OpensslAsync("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn);
        await File.WriteAllTextAsync(Path.Combine(Directory, name + ".ext"), extensions);
        await OpensslAsync("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext");
    }

    private async Task OpensslAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("openssl", args)
        {
            WorkingDirectory = Directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not run openssl");
        var stdout = p.StandardOutput.ReadToEndAsync();
        string stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        await stdout;
        Assert.True(p.ExitCode == 0, $"openssl {string.Join(' ', args)} failed ({p.ExitCode}):\n{stderr}");
    }
}
