using System.Net;
using BackupAppliance.Hosting;
using BackupAppliance.Replication.Sending;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Agent;

/// <summary>
/// The agent's configuration file (JSON; every option is described in config/agent.json and
/// config/README.md). Relative paths are relative to the file's folder.
/// </summary>
public sealed record AgentConfig : IValidatedConfig
{
    /// <summary>This host's name in NATS subjects: 1 to 64 letters, digits, '-' or '_'.</summary>
    public required string Agent { get; init; }
    public NatsSection Nats { get; set; } = new();
    /// <summary>The agent's pool folder (made with <c>bapp pool create</c>).</summary>
    public required string Pool { get; init; }
    /// <summary>Where the agent keeps each volume's backup base; default <c>POOL/agent</c>.</summary>
    public string? StateDir { get; init; }
    /// <summary>The control socket `bapp backup now` talks to; default <c>STATE_DIR/agent.sock</c>.</summary>
    public string? ControlSocket { get; init; }
    /// <summary>TCP address:port the pool's volumes are served on over NBD, or "none".</summary>
    public string NbdListen { get; set; } = "127.0.0.1:10809";
    /// <summary>A Unix socket to serve NBD on as well (optional).</summary>
    public string? NbdUnix { get; init; }
    /// <summary>The volumes this agent backs up.</summary>
    public List<AgentVolumeConfig> Volumes { get; set; } = new();
    /// <summary>zstd level of data payloads: 1 (fastest standard level) … 19, or -1 … -20 (zstd's fast levels: faster still, larger).</summary>
    public int ZstdLevel { get; set; } = 3;
    /// <summary>Threads compressing and hashing a backup's data at once; 0: the processor count, at most 4.</summary>
    public int CompressionThreads { get; init; }
    /// <summary>When the receiver's latest point is not this agent's base: start a full backup (true) or fail (false).</summary>
    public bool FullBackupOnBaseMismatch { get; init; }
    /// <summary>How long the sender waits for an answer (begin, ack, credit, commit_ack) before it offers again.</summary>
    public double ReplyTimeoutSeconds { get; set; } = 10;
    /// <summary>How long one backup may try (through disconnects and restarts) before it fails; 0: for ever.</summary>
    public double BackupDeadlineSeconds { get; set; } = 3600;

    /// <summary>The file it was loaded from (paths are resolved against its folder).</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string? File { get; init; }

    public string PoolPath => Resolve(Pool);
    public string StatePath => StateDir is null ? Path.Combine(PoolPath, "agent") : Resolve(StateDir);
    public string ControlSocketPath => ControlSocket is null ? Path.Combine(StatePath, "agent.sock") : Resolve(ControlSocket);

    public static AgentConfig Load(string path) => ConfigFile.Load<AgentConfig>(path, AgentConfigJson.Default) with { File = Path.GetFullPath(path) };

    public AgentVolumeConfig? FindVolume(string name) => Volumes.Find(v => v.Name == name);

    /// <summary>The NBD TCP endpoint, or null for "none".</summary>
    public IPEndPoint? NbdEndPoint => NbdListen == "none" ? null : IPEndPoint.Parse(NbdListen);

    public void Validate(string file)
    {
        Names.Check(file, "agent", Agent);
        if (string.IsNullOrWhiteSpace(Pool))
            throw new ConfigException(file, "pool", "is empty; name the agent's pool folder");
        if (NbdListen != "none" && !IPEndPoint.TryParse(NbdListen, out _))
            throw new ConfigException(file, "nbd_listen", $"expects ADDRESS:PORT such as 127.0.0.1:10809, or \"none\" (is '{NbdListen}')");
        if (Volumes.Count == 0)
            throw new ConfigException(file, "volumes", "lists no volume to back up");
        for (int i = 0; i < Volumes.Count; i++)
        {
            Names.Check(file, $"volumes[{i}].name", Volumes[i].Name);
            if (Volumes.FindIndex(v => v.Name == Volumes[i].Name) != i)
                throw new ConfigException(file, $"volumes[{i}].name", $"volume '{Volumes[i].Name}' is listed twice");
        }
        if (ZstdLevel is < -20 or 0 or > 19)
            throw new ConfigException(file, "zstd_level", $"must be 1 to 19, or -1 to -20 for zstd's fast levels (is {ZstdLevel})");
        if (CompressionThreads < 0 || CompressionThreads > BackupSenderOptions.MaxCompressionThreads)
            throw new ConfigException(file, "compression_threads", $"must be 0 (automatic) to {BackupSenderOptions.MaxCompressionThreads} (is {CompressionThreads})");
        ConfigRules.Seconds(file, "reply_timeout_seconds", ReplyTimeoutSeconds);
        ConfigRules.Seconds(file, "backup_deadline_seconds", BackupDeadlineSeconds, allowZero: true);
        Nats.ToOptions(file, $"bapp-agent-{Agent}");
    }

    private string Resolve(string path) => ConfigFile.ResolvePath(File, path);
}

/// <summary>One protected volume.</summary>
public sealed record AgentVolumeConfig
{
    /// <summary>The volume's name in the agent's pool (also its NATS subject token).</summary>
    public required string Name { get; init; }
    /// <summary>Overrides the agent-wide full_backup_on_base_mismatch for this volume.</summary>
    public bool? FullBackupOnBaseMismatch { get; init; }
}

/// <summary>The rule for agent and volume names, which are NATS subject tokens (PROTOCOL.md).</summary>
public static class Names
{
    public static void Check(string file, string option, string? name)
    {
        if (!WireProtocol.IsName(name))
            throw new ConfigException(file, option, $"'{name}' is not a name: use 1 to {WireProtocol.MaxNameLength} ASCII letters, digits, '-' or '_'");
    }
}
