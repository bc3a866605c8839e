using System.Security.Cryptography;
using System.Text.Json.Nodes;
using BackupAppliance.TestSupport;

namespace BackupAppliance.EndToEnd.Tests.Support;

/// <summary>
/// Everything of one end-to-end backup setup, all real: a nats-server on a free loopback port, an
/// agent pool with one volume, the agent and receiver daemons as `bapp` child processes with
/// configuration files, writes through NBD with qemu-io, images read with nbdcopy, and the CLI's
/// `backup now`, `backup list` and `restore`.
/// </summary>
public sealed class BackupRig : IAsyncDisposable
{
    public const string Volume = "disk";
    private readonly TempDir _dir;
    private BappProcess? _agent;
    private BappProcess? _receiver;

    private BackupRig(TempDir dir, NatsServer nats, long volumeSize)
    {
        _dir = dir;
        Nats = nats;
        VolumeSize = volumeSize;
    }

    public NatsServer Nats { get; }
    public long VolumeSize { get; }
    public string Folder => _dir.Path;
    public string AgentConfig => Path.Combine(Folder, "agent.json");
    public string ReceiverConfig => Path.Combine(Folder, "receiver.json");
    public int NbdPort { get; private set; }
    public string NbdUrl => $"nbd://127.0.0.1:{NbdPort}/{Volume}";

    /// <summary>Makes the pool and volume, writes both configurations, starts nats-server, the receiver and the agent. The receiver's pool holds <paramref name="receiverPoolSize"/> bytes of data (default 64 volumes' worth: points are never deleted yet).</summary>
    public static async Task<BackupRig> StartAsync(long volumeSize, string extraAgentOptions = "", string extraReceiverOptions = "", long? receiverPoolSize = null)
    {
        var dir = Tool.TempDir();
        var nats = await NatsServer.StartAsync();
        var rig = new BackupRig(dir, nats, volumeSize);
        string pool = Path.Combine(dir.Path, "pool");
        rig.Expect(Tool.Bapp("pool", "create", "--pool", pool, "--data-size", (volumeSize * 4).ToString()), "pool create");
        rig.Expect(Tool.Bapp("vol", "create", "--pool", pool, Volume, "--size", volumeSize.ToString()), "vol create");
        File.WriteAllText(rig.AgentConfig, $$"""
            // test agent
            {
              "agent": "host1",
              "nats": { "urls": ["{{nats.Url}}"] },
              "pool": "pool",
              "nbd_listen": "127.0.0.1:0",
              "volumes": [ { "name": "{{Volume}}" } ],
              "reply_timeout_seconds": 2,
              {{extraAgentOptions}}
              "zstd_level": 1
            }
            """);
        File.WriteAllText(rig.ReceiverConfig, $$"""
            {
              "nats": { "urls": ["{{nats.Url}}"] },
              "pool": "replica",
              "pool_data_size": "{{receiverPoolSize ?? volumeSize * 64}}",
              {{extraReceiverOptions}}
              "credit_frames": 16
            }
            """);
        rig.StartReceiver();
        rig.StartAgent();
        return rig;
    }

    public void StartAgent()
    {
        _agent?.Dispose();
        _agent = BappProcess.Start("agent ", "agent", "run", "--config", AgentConfig);
        string nbd = _agent.ReadyLine.Split(' ').First(w => w.StartsWith("nbd=", StringComparison.Ordinal))[4..];
        NbdPort = int.Parse(nbd[(nbd.LastIndexOf(':') + 1)..]);
    }

    public void StartReceiver()
    {
        _receiver?.Dispose();
        _receiver = BappProcess.Start("receiver ", "receiver", "run", "--config", ReceiverConfig);
    }

    /// <summary>
    /// SIGTERM to both daemons (systemd's stop): each must exit 0 and print no unhandled exception.
    /// </summary>
    public void StopDaemonsCleanly()
    {
        foreach (var (name, p) in new[] { ("agent", _agent), ("receiver", _receiver) })
        {
            if (p is null)
                continue;
            int code = p.Stop();
            Assert.True(code == 0 && !p.Log.Contains("Unhandled exception", StringComparison.Ordinal), $"the {name} after SIGTERM: exit code {code}; stderr:\n{p.Log}");
        }
    }

    public void KillAgent()
    {
        SaveLog("agent", _agent);
        _agent!.Kill();
    }

    public void KillReceiver()
    {
        SaveLog("receiver", _receiver);
        _receiver!.Kill();
    }

    // Keeps a killed daemon's log in the rig's folder (the next one starts a new log).
    private void SaveLog(string name, BappProcess? p)
    {
        if (p is not null)
            File.AppendAllText(Path.Combine(Folder, name + ".log"), p.Log);
    }

    public string Logs => $"--- agent\n{_agent?.Log}\n--- receiver\n{_receiver?.Log}\n--- nats\n{Nats.Log}";

    /// <summary>Writes through NBD with one qemu-io: each write copies <c>length</c> bytes of a random file.</summary>
    public void Write(Random rng, int writes, int maxLength, int zeroWrites = 0, int discards = 0)
    {
        string source = Path.Combine(Folder, "random.bin");
        if (!File.Exists(source))
        {
            var bytes = new byte[8 << 20];
            rng.NextBytes(bytes);
            File.WriteAllBytes(source, bytes);
        }
        var args = new List<string> { "-f", "raw", NbdUrl };
        void Add(string command) { args.Add("-c"); args.Add(command); }
        for (int i = 0; i < writes; i++)
        {
            long length = rng.Next(1, maxLength / 512 + 1) * 512L;
            long offset = rng.NextInt64((VolumeSize - length) / 512 + 1) * 512;
            // -s takes bytes from the start of the file; vary them by writing a pattern part first.
            Add($"write -s {source} {offset} {length}");
            Add($"write -P {rng.Next(1, 255)} {offset} {Math.Min(512, length)}");
        }
        for (int i = 0; i < zeroWrites; i++)
        {
            long length = rng.Next(1, 64) * 65536L;
            long offset = rng.NextInt64((VolumeSize - length) / 65536 + 1) * 65536;
            Add($"write -z -u {offset} {length}");
        }
        for (int i = 0; i < discards; i++)
        {
            long length = rng.Next(1, 64) * 65536L;
            long offset = rng.NextInt64((VolumeSize - length) / 65536 + 1) * 65536;
            Add($"discard {offset} {length}");
        }
        Add("flush");
        var r = Tool.Run("qemu-io", [.. args]);
        if (r.ExitCode != 0 || r.Stdout.Contains("failed", StringComparison.OrdinalIgnoreCase))
            throw new InvalidOperationException($"qemu-io failed ({r.ExitCode}): {r.Stdout} {r.Stderr}\n{Logs}");
    }

    /// <summary>Copies the volume as it is now (nbdcopy) and returns the copy's sha256.</summary>
    public string Snapshot(string name)
    {
        string path = Path.Combine(Folder, name);
        var r = Tool.Run("nbdcopy", NbdUrl, path);
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"nbdcopy failed: {r.Stderr}");
        return Sha256(path);
    }

    public Tool.Result BackupNow() => Tool.Bapp("backup", "now", Volume, "--config", AgentConfig, "--json");

    public JsonObject BackupNowOk()
    {
        var r = BackupNow();
        Expect(r, "backup now");
        return (JsonObject)JsonNode.Parse(r.Stdout)!;
    }

    public JsonArray Points()
    {
        var r = Tool.Bapp("backup", "list", Volume, "--config", ReceiverConfig, "--json");
        if (r.ExitCode != 0 && r.Stderr.Contains("holds no backups", StringComparison.Ordinal))
            return new JsonArray();
        Expect(r, "backup list");
        return JsonNode.Parse(r.Stdout)!["points"]!.AsArray();
    }

    /// <summary>Restores a point to a new sparse file and returns its sha256.</summary>
    public string Restore(string point, string name)
    {
        string path = Path.Combine(Folder, name);
        File.Delete(path);
        Expect(Tool.Bapp("restore", $"{Volume}@{point}", "--to", path, "--config", ReceiverConfig), "restore");
        return Sha256(path);
    }

    public static string Sha256(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(f));
    }

    public void Expect(Tool.Result r, string what)
    {
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"{what} failed ({r.ExitCode}): {r.Stderr}{r.Stdout}\n{Logs}");
    }

    public async ValueTask DisposeAsync()
    {
        _agent?.Stop();
        _agent?.Dispose();
        _receiver?.Stop();
        _receiver?.Dispose();
        await Nats.DisposeAsync();
        _dir.Dispose();
    }
}
