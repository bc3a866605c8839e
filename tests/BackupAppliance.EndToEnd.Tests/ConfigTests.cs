using System.Net;
using System.Net.Sockets;
using BackupAppliance.Agent;
using BackupAppliance.Receiver;
using BackupAppliance.TestSupport;

namespace BackupAppliance.EndToEnd.Tests;

/// <summary>
/// Daemon configuration files: the examples in config/ stay valid, and every broken file is refused
/// by the real `bapp agent run` / `bapp receiver run` at start, with exit code 1, the file and the
/// exact option named, nothing on stdout and nothing created beside the file.
/// </summary>
public sealed class ConfigTests
{
    private const string AgentBase = """ "agent": "host1", "pool": "pool", "volumes": [ { "name": "disk" } ], """;
    private const string ReceiverBase = """ "pool": "replica", """;

    [Fact]
    public void ExampleConfigsLoad()
    {
        string folder = Path.Combine(RepositoryRoot(), "config");
        var agent = AgentConfig.Load(Path.Combine(folder, "agent.json"));
        Assert.Equal("host1", agent.Agent);
        Assert.Equal(["disk"], agent.Volumes.Select(v => v.Name));
        Assert.Equal("/var/lib/backupappliance/pool", agent.PoolPath);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 10809), agent.NbdEndPoint);
        Assert.Equal(3, agent.ZstdLevel);
        Assert.Equal(["nats://127.0.0.1:4222"], agent.Nats.ToOptions(agent.File!, "t").Urls);

        var receiver = ReceiverConfig.Load(Path.Combine(folder, "receiver.json"));
        Assert.Equal("/var/lib/backupappliance/replica", receiver.PoolPath);
        Assert.Equal(64L << 30, receiver.PoolDataBytes);
        Assert.Equal(64 << 10, receiver.PoolBlockBytes);
        Assert.Equal(32, receiver.CreditFrames);
        Assert.Equal(16, receiver.DurableEveryFrames);
        Assert.Null(receiver.Agents);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(-20)]
    [InlineData(1)]
    [InlineData(19)]
    public void ZstdFastLevelsAreAcceptedAsWellAsTheStandardOnes(int level)
    {
        using var dir = new TempDir();
        string agentFile = dir.File("agent.json");
        File.WriteAllText(agentFile, $$"""{ {{AgentBase}} "zstd_level": {{level}} }""");
        Assert.Equal(level, AgentConfig.Load(agentFile).ZstdLevel);
    }

    [Fact]
    public void OptionsLeftOutTakeTheirDocumentedDefaults()
    {
        using var dir = new TempDir();
        string agentFile = dir.File("agent.json"), receiverFile = dir.File("receiver.json");
        File.WriteAllText(agentFile, $$"""{ {{AgentBase.TrimEnd().TrimEnd(',')}} }""");
        File.WriteAllText(receiverFile, """{ "pool": "replica" }""");

        var agent = AgentConfig.Load(agentFile);
        Assert.Equal(["nats://127.0.0.1:4222"], agent.Nats.Urls);
        Assert.True(agent.Nats.TlsVerifyServerName);
        Assert.Equal(0.5, agent.Nats.PingIntervalSeconds);
        Assert.Equal(2, agent.Nats.MaxPingsOut);
        Assert.Equal("127.0.0.1:10809", agent.NbdListen);
        Assert.Equal(3, agent.ZstdLevel);
        Assert.Equal(0, agent.CompressionThreads);
        Assert.Equal(10, agent.ReplyTimeoutSeconds);
        Assert.Equal(3600, agent.BackupDeadlineSeconds);
        Assert.False(agent.FullBackupOnBaseMismatch);
        Assert.Equal(Path.Combine(dir.Path, "pool", "agent", "agent.sock"), agent.ControlSocketPath);

        var receiver = ReceiverConfig.Load(receiverFile);
        Assert.Equal("receiver", receiver.Name);
        Assert.Equal(["nats://127.0.0.1:4222"], receiver.Nats.Urls);
        Assert.Equal(64L << 30, receiver.PoolDataBytes);
        Assert.Equal(64 << 10, receiver.PoolBlockBytes);
        Assert.Equal(32, receiver.CreditFrames);
        Assert.Equal(16, receiver.DurableEveryFrames);
    }

    public static TheoryData<string, string, string> BrokenAgentConfigs => new()
    {
        { "zstd level out of range", $$"""{ {{AgentBase}} "zstd_level": 40 }""", "option 'zstd_level': must be 1 to 19, or -1 to -20 for zstd's fast levels (is 40)" },
        { "zstd level below the fast levels", $$"""{ {{AgentBase}} "zstd_level": -21 }""", "option 'zstd_level': must be 1 to 19, or -1 to -20 for zstd's fast levels (is -21)" },
        { "compression threads out of range", $$"""{ {{AgentBase}} "compression_threads": -2 }""", "option 'compression_threads': must be 0 (automatic) to 64 (is -2)" },
        { "unknown option", $$"""{ {{AgentBase}} "zstd_levl": 3 }""", "option 'zstd_levl': is not a known option" },
        { "unknown nested option", $$"""{ {{AgentBase}} "nats": { "tls_ca": "ca.pem" } }""", "option 'nats.tls_ca': is not a known option" },
        { "derived value as option", $$"""{ {{AgentBase}} "pool_path": "/elsewhere" }""", "option 'pool_path': is not a known option" },
        { "ignored member as option", $$"""{ {{AgentBase}} "file": "other.json" }""", "option 'file': is not a known option" },
        { "option set twice", $$"""{ {{AgentBase}} "zstd_level": 3, "zstd_level": 5 }""", "option 'zstd_level': is set twice" },
        { "wrong type number", $$"""{ {{AgentBase}} "zstd_level": "3" }""", "option 'zstd_level': expects a whole number (line 1" },
        { "wrong type bool", $$"""{ {{AgentBase}} "nats": { "tls": "yes" } }""", "option 'nats.tls': expects true or false" },
        { "wrong type list", """{ "agent": "host1", "pool": "pool", "volumes": { "name": "disk" } }""", "option 'volumes': expects a list [ … ]" },
        { "null section", $$"""{ {{AgentBase}} "nats": null }""", "option 'nats': may not be null" },
        { "not JSON", "{ \"agent\": \"host1\",\n  \"pool\": }", "is not valid JSON (line 2, column" },
        { "not an object", "[ 1, 2 ]", "must be one JSON object" },
        { "empty file", "", "is empty; it must be one JSON object" },
        { "only a comment", "// nothing yet\n", "is empty (only comments or blanks); it must be one JSON object" },
        { "missing agent", """{ "pool": "pool", "volumes": [ { "name": "disk" } ] }""", "option 'agent': is required but missing" },
        { "missing pool", """{ "agent": "host1", "volumes": [ { "name": "disk" } ] }""", "option 'pool': is required but missing" },
        { "volume without name", """{ "agent": "host1", "pool": "pool", "volumes": [ { "name": "disk" }, {} ] }""", "option 'volumes[1].name': is required but missing" },
        { "bad agent name", """{ "agent": "host 1", "pool": "pool", "volumes": [ { "name": "disk" } ] }""", "option 'agent': 'host 1' is not a name" },
        { "no volumes", """{ "agent": "host1", "pool": "pool", "volumes": [] }""", "option 'volumes': lists no volume" },
        { "bad volume name", """{ "agent": "host1", "pool": "pool", "volumes": [ { "name": "disk" }, { "name": "a.b" } ] }""", "option 'volumes[1].name': 'a.b' is not a name" },
        { "volume twice", """{ "agent": "host1", "pool": "pool", "volumes": [ { "name": "disk" }, { "name": "disk" } ] }""", "option 'volumes[1].name': volume 'disk' is listed twice" },
        { "nbd_listen without port", $$"""{ {{AgentBase}} "nbd_listen": "localhost" }""", "option 'nbd_listen': expects ADDRESS:PORT" },
        { "reply timeout zero", $$"""{ {{AgentBase}} "reply_timeout_seconds": 0 }""", "option 'reply_timeout_seconds': must be above 0" },
        { "nats url scheme", $$"""{ {{AgentBase}} "nats": { "urls": ["http://127.0.0.1:4222"] } }""", "option 'nats.urls[0]': 'http://127.0.0.1:4222' has scheme 'http'" },
        { "nats url not a string", $$"""{ {{AgentBase}} "nats": { "urls": [4222] } }""", "option 'nats.urls[0]': expects a string" },
        { "nats no urls", $$"""{ {{AgentBase}} "nats": { "urls": [] } }""", "option 'nats.urls': at least one server URL is needed" },
        { "password and password_file", $$"""{ {{AgentBase}} "nats": { "user": "u", "password": "p", "password_file": "pw.txt" } }""", "option 'nats.password_file': set either password or password_file, not both" },
        { "missing password_file", $$"""{ {{AgentBase}} "nats": { "user": "u", "password_file": "pw.txt" } }""", "option 'nats.password_file': cannot read " },
        { "user without password", $$"""{ {{AgentBase}} "nats": { "user": "u" } }""", "option 'nats.password': is required with user" },
        { "token and user", $$"""{ {{AgentBase}} "nats": { "user": "u", "password": "p", "token": "t" } }""", "option 'nats.token': set either user/password or token, not both" },
        { "tls file without tls", $$"""{ {{AgentBase}} "nats": { "tls_ca_file": "ca.pem" } }""", "option 'nats.tls': TLS files are set but tls is off" },
        { "missing tls file", $$"""{ {{AgentBase}} "nats": { "tls": true, "tls_ca_file": "ca.pem" } }""", "option 'nats.tls_ca_file': file '" },
        { "tls cert without key", $$"""{ {{AgentBase}} "nats": { "tls": true, "tls_cert_file": "agent.json" } }""", "option 'nats.tls_key_file': is required with tls_cert_file" },
    };

    public static TheoryData<string, string, string> BrokenReceiverConfigs => new()
    {
        { "credit frames zero", $$"""{ {{ReceiverBase}} "credit_frames": 0 }""", "option 'credit_frames': must be 1 to 1024 (is 0)" },
        { "durable above credit", $$"""{ {{ReceiverBase}} "credit_frames": 16, "durable_every_frames": 32 }""", "option 'durable_every_frames': must be 1 to credit_frames (16) (is 32)" },
        { "block size not a power of two", $$"""{ {{ReceiverBase}} "pool_block_size": "48K" }""", "option 'pool_block_size': expects a power of two from 64K to 1G (is '48K')" },
        { "block size not a size", $$"""{ {{ReceiverBase}} "pool_block_size": 65536 }""", "option 'pool_block_size': expects a string" },
        { "data size too small", $$"""{ {{ReceiverBase}} "pool_data_size": "1M" }""", "option 'pool_data_size': expects a size of at least 16M" },
        { "bad agent name", $$"""{ {{ReceiverBase}} "agents": [ "host1", "host 2" ] }""", "option 'agents[1]': 'host 2' is not an agent name" },
        { "unknown option", $$"""{ {{ReceiverBase}} "credit_frame": 8 }""", "option 'credit_frame': is not a known option" },
        { "missing pool", """{ "credit_frames": 16 }""", "option 'pool': is required but missing" },
        { "empty pool", """{ "pool": " " }""", "option 'pool': is empty" },
        { "not JSON", """{ "pool": "replica" """, "is not valid JSON" },
        { "nats reconnect negative", $$"""{ {{ReceiverBase}} "nats": { "reconnect_wait_seconds": -1 } }""", "option 'nats.reconnect_wait_seconds': must be 0 to 86400 seconds (is -1)" },
        { "token and token_file", $$"""{ {{ReceiverBase}} "nats": { "token": "t", "token_file": "t.txt" } }""", "option 'nats.token_file': set either token or token_file, not both" },
    };

    [Theory]
    [MemberData(nameof(BrokenAgentConfigs))]
    public async Task AgentRefusesBrokenConfig(string why, string json, string expected)
    {
        using var dir = Tool.TempDir();
        await ExpectRefusedAsync(dir, json, expected, why, "agent");
    }

    [Theory]
    [MemberData(nameof(BrokenReceiverConfigs))]
    public async Task ReceiverRefusesBrokenConfigAndMakesNoPool(string why, string json, string expected)
    {
        using var dir = Tool.TempDir();
        await ExpectRefusedAsync(dir, json, expected, why, "receiver");
        Assert.False(Directory.Exists(dir.File("replica")), $"{why}: the receiver made its pool folder despite refusing the config");
    }

    [Fact]
    public async Task AgentVolumeMissingFromPoolIsRefusedBeforeWaitingForNats()
    {
        using var dir = Tool.TempDir();
        string pool = dir.File("pool");
        Expect(Tool.Bapp("pool", "create", "--pool", pool, "--data-size", "64M"));
        Expect(Tool.Bapp("vol", "create", "--pool", pool, "disk", "--size", "4M"));
        // NATS on a port nobody listens on: a daemon that connected first would wait for ever.
        string json = $$"""
            {
              "agent": "host1", "pool": "pool", "nbd_listen": "none",
              "nats": { "urls": ["nats://127.0.0.1:{{ClosedPort()}}"] },
              "volumes": [ { "name": "disk" }, { "name": "db" } ]
            }
            """;
        var r = await ExpectRefusedAsync(dir, json, "option 'volumes[1].name': the pool " + pool + " has no volume 'db'", "volume not in pool", "agent");
        Assert.DoesNotContain("NATS", r.Stderr);
    }

    [Fact]
    public async Task AgentPoolThatIsNoPoolIsRefused()
    {
        using var dir = Tool.TempDir();
        Directory.CreateDirectory(dir.File("pool"));
        string json = $$"""{ {{AgentBase}} "nbd_listen": "none", "nats": { "urls": ["nats://127.0.0.1:{{ClosedPort()}}"] } }""";
        await ExpectRefusedAsync(dir, json, $"option 'pool': {dir.File("pool")} is not a pool (make one with `bapp pool create", "pool folder without a pool", "agent");
    }

    [Fact]
    public async Task AgentWithNbdListenNoneServesNothingAndRuns()
    {
        using var dir = Tool.TempDir();
        await using var nats = await NatsServer.StartAsync();
        string pool = dir.File("pool");
        Expect(Tool.Bapp("pool", "create", "--pool", pool, "--data-size", "64M"));
        Expect(Tool.Bapp("vol", "create", "--pool", pool, "disk", "--size", "4M"));
        string path = dir.File("agent.json");
        File.WriteAllText(path, $$"""{ "agent": "host1", "pool": "pool", "nbd_listen": "none", "nats": { "urls": ["{{nats.Url}}"] }, "volumes": [ { "name": "disk" } ] }""");
        using var agent = BappProcess.Start("agent ", "agent", "run", "--config", path);
        Assert.Contains(" nbd=none ", agent.ReadyLine);
        int code = agent.Stop();
        Assert.True(code == 0, $"exit {code}; stderr:\n{agent.Log}");
        Assert.Contains("NBD on nothing", agent.Log);
    }

    [Fact]
    public void SecretAndTlsFilesAreRelativeToTheConfigFolder()
    {
        using var dir = Tool.TempDir();
        Directory.CreateDirectory(dir.File("etc"));
        File.WriteAllText(dir.File("etc/nats-password"), "s3cret\nignored second line\n");
        File.WriteAllText(dir.File("etc/ca.pem"), "not checked here\n");
        string path = dir.File("etc/agent.json");
        File.WriteAllText(path, $$"""{ {{AgentBase}} "nats": { "user": "host1", "password_file": "nats-password", "tls": true, "tls_ca_file": "ca.pem" } }""");
        var config = AgentConfig.Load(path);
        var options = config.Nats.ToOptions(config.File!, "t");
        Assert.Equal("s3cret", options.Password);
        Assert.Equal(dir.File("etc/ca.pem"), options.TlsCaFile);
        Assert.Equal(dir.File("etc/pool"), config.PoolPath);
    }

    /// <summary>Runs the daemon on <paramref name="json"/> and checks it stopped at once: exit 1, the message, nothing written.</summary>
    private static async Task<Tool.Result> ExpectRefusedAsync(TempDir dir, string json, string expected, string why, string daemon)
    {
        string path = dir.File(daemon + ".json");
        File.WriteAllText(path, json);
        var before = Listing(dir.Path);
        // A config that is wrongly accepted starts a daemon that never returns: fail instead of hanging the run.
        var r = await Task.Run(() => Tool.Bapp(daemon, "run", "--config", path)).WaitAsync(TimeSpan.FromMinutes(2));
        Assert.True(r.ExitCode == 1, $"{why}: exit {r.ExitCode}, stderr: {r.Stderr}");
        Assert.StartsWith($"error: config {path}: ", r.Stderr);
        Assert.Contains(expected, r.Stderr);
        Assert.Equal("", r.Stdout);
        Assert.Equal(before, Listing(dir.Path));
        return r;
    }

    private static List<string> Listing(string folder) =>
        Directory.EnumerateFileSystemEntries(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();

    private static int ClosedPort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }

    private static void Expect(Tool.Result r)
    {
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"setup failed ({r.ExitCode}): {r.Stderr}");
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "BackupAppliance.sln")))
                return dir.FullName;
        }
        throw new DirectoryNotFoundException("the repository root (BackupAppliance.sln) is not above the test's folder");
    }
}
