using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replica;

/// <summary>
/// Where a replica store keeps what, by name. In the store's folder: <c>pool/</c> (its thin pool),
/// <c>points/&lt;agent&gt;/&lt;volume&gt;/&lt;id&gt;.json</c> (each point's record) and <c>&lt;id&gt;.hashes</c>
/// (the block hash table, of the latest point only), <c>staging/&lt;agent&gt;/&lt;volume&gt;/progress.json</c> and
/// <c>hashes</c>. In the pool, a point is the volume <c>&lt;agent&gt;.&lt;volume&gt;.&lt;id&gt;</c> and
/// a staging <c>&lt;agent&gt;.&lt;volume&gt;.staging</c>: agent and volume names have no dots and a
/// point id starts with a digit, so the two never clash.
/// </summary>
internal sealed class StoreLayout
{
    public const string PoolFolder = "pool";
    public const string PointsFolder = "points";
    public const string StagingFolder = "staging";
    public const string ProgressFile = "progress.json";
    public const string HashesFile = "hashes";
    public const string RecordExtension = ".json";
    public const string HashesExtension = ".hashes";
    private const string StagingSuffix = ".staging";

    public StoreLayout(string dir) => Root = Path.GetFullPath(dir);

    public string Root { get; }
    public string Pool => Path.Combine(Root, PoolFolder);

    public string PointFolder(string agent, string volume) => Path.Combine(Root, PointsFolder, agent, volume);
    public string PointRecord(string agent, string volume, string id) => Path.Combine(PointFolder(agent, volume), id + RecordExtension);
    public string PointHashes(string agent, string volume, string id) => Path.Combine(PointFolder(agent, volume), id + HashesExtension);

    public string StagingDir(string agent, string volume) => Path.Combine(Root, StagingFolder, agent, volume);
    public string StagingProgress(string agent, string volume) => Path.Combine(StagingDir(agent, volume), ProgressFile);
    public string StagingHashes(string agent, string volume) => Path.Combine(StagingDir(agent, volume), HashesFile);

    public static string PointVolume(string agent, string volume, string id) => $"{agent}.{volume}.{id}";
    public static string StagingVolume(string agent, string volume) => $"{agent}.{volume}{StagingSuffix}";
    public static bool IsStagingVolume(string name) => name.EndsWith(StagingSuffix, StringComparison.Ordinal);

    public static bool IsName(string? value) =>
        value is { Length: > 0 and <= WireProtocol.MaxNameLength } && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');

    /// <summary>Agent and volume names are NATS subject tokens (PROTOCOL.md): 1 to 64 ASCII letters, digits, '-' or '_'.</summary>
    public static void ValidateName(string value, string what)
    {
        ArgumentNullException.ThrowIfNull(value, what);
        if (!IsName(value))
            throw new ReplicaStoreException(ReplicaStoreError.UnknownVolume,
                $"{what} '{value}' is not a valid name (1 to {WireProtocol.MaxNameLength} ASCII letters, digits, '-' or '_')");
    }
}
