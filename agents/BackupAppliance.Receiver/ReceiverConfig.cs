using BackupAppliance.Core;
using BackupAppliance.Hosting;
using BackupAppliance.Replica;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Receiver;

/// <summary>
/// The receiver's configuration file (JSON; every option is described in config/receiver.json and
/// config/README.md). Relative paths are relative to the file's folder.
/// </summary>
public sealed record ReceiverConfig : IValidatedConfig
{
    /// <summary>The receiver's name (NATS client name, logs).</summary>
    public string Name { get; set; } = "receiver";
    public NatsSection Nats { get; set; } = new();
    /// <summary>The receiver's store folder (its pool is in POOL/pool); made at first start if missing.</summary>
    public required string Pool { get; init; }
    /// <summary>Data size of the pool when it is made (512, 64K, 10G, 1T…).</summary>
    public string PoolDataSize { get; set; } = "64G";
    /// <summary>Data block size of the pool when it is made (64K to 1G, a power of two).</summary>
    public string PoolBlockSize { get; set; } = "64K";
    /// <summary>The control socket `bapp backup list` and `bapp restore` use; default <c>POOL/receiver.sock</c>.</summary>
    public string? ControlSocket { get; init; }
    /// <summary>Agents whose backups are kept; null or missing: every agent.</summary>
    public List<string>? Agents { get; init; }
    /// <summary>Data frames (≤ 1 MiB each) an agent may send ahead of the receiver's last durable one.</summary>
    public int CreditFrames { get; set; } = 32;
    /// <summary>Make received data durable (and acknowledge it) every this many data frames.</summary>
    public int DurableEveryFrames { get; set; } = 16;

    [System.Text.Json.Serialization.JsonIgnore]
    public string? File { get; init; }

    public string PoolPath => Resolve(Pool);
    public string ControlSocketPath => ControlSocket is null ? Path.Combine(PoolPath, "receiver.sock") : Resolve(ControlSocket);
    public long PoolDataBytes => ByteSize.TryParse(PoolDataSize, out long v) ? v : 0;
    public int PoolBlockBytes => ByteSize.TryParse(PoolBlockSize, out long v) ? (int)v : 0;

    /// <summary>The store's options: which agents it keeps.</summary>
    public ReplicaStoreOptions StoreOptions() => new() { Keep = Agents?.Select(a => new KeptVolume(a)).ToList() };

    public static ReceiverConfig Load(string path) => ConfigFile.Load<ReceiverConfig>(path, ReceiverConfigJson.Default) with { File = Path.GetFullPath(path) };

    public void Validate(string file)
    {
        if (string.IsNullOrWhiteSpace(Pool))
            throw new ConfigException(file, "pool", "is empty; name the receiver's pool folder");
        if (!ByteSize.TryParse(PoolDataSize, out long data) || data < (1L << 24))
            throw new ConfigException(file, "pool_data_size", $"expects a size of at least 16M such as 64G or 2T (is '{PoolDataSize}')");
        if (!ByteSize.TryParse(PoolBlockSize, out long block) || block < 65536 || block > (1L << 30) || (block & (block - 1)) != 0)
            throw new ConfigException(file, "pool_block_size", $"expects a power of two from 64K to 1G (is '{PoolBlockSize}')");
        if (Agents is not null)
        {
            for (int i = 0; i < Agents.Count; i++)
            {
                if (!WireProtocol.IsName(Agents[i]))
                    throw new ConfigException(file, $"agents[{i}]", $"'{Agents[i]}' is not an agent name: use 1 to {WireProtocol.MaxNameLength} ASCII letters, digits, '-' or '_'");
            }
        }
        if (CreditFrames < 1 || CreditFrames > 1024)
            throw new ConfigException(file, "credit_frames", $"must be 1 to 1024 (is {CreditFrames})");
        if (DurableEveryFrames < 1 || DurableEveryFrames > CreditFrames)
            throw new ConfigException(file, "durable_every_frames", $"must be 1 to credit_frames ({CreditFrames}) (is {DurableEveryFrames})");
        Nats.ToOptions(file, $"bapp-receiver-{Name}");
    }

    private string Resolve(string path) => ConfigFile.ResolvePath(File, path);
}
