using System.Text.Json;
using BackupAppliance.Replication.Wire;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Agent;

/// <summary>
/// The agent's state folder: <c>volumes/NAME.json</c> (<see cref="VolumeBackupState"/>, written
/// atomically) and the block hash tables next to it (<c>NAME.POINT.hashes</c> for a base,
/// <c>NAME.pending.hashes</c> for the backup under way).
/// </summary>
public sealed class AgentStateStore
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
    private readonly string _dir;

    public AgentStateStore(string stateDir)
    {
        _dir = Path.Combine(Path.GetFullPath(stateDir), "volumes");
        Directory.CreateDirectory(_dir);
    }

    public string Folder => _dir;

    public VolumeBackupState Load(string volume)
    {
        string path = StatePath(volume);
        if (!File.Exists(path))
            return new VolumeBackupState();
        try
        {
            return JsonSerializer.Deserialize<VolumeBackupState>(File.ReadAllBytes(path), Json)
                ?? throw new InvalidDataException("it is null");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"agent state {path} is not valid ({e.Message}); move it away to start this volume over with a full backup", e);
        }
    }

    /// <summary>Writes the state durably (temp file, fsync, rename, fsync of the folder).</summary>
    public void Save(string volume, VolumeBackupState state) =>
        AtomicFile.Write(StatePath(volume), JsonSerializer.SerializeToUtf8Bytes(state, Json));

    public string HashesPath(string fileName) => Path.Combine(_dir, fileName);

    public static string BaseHashesName(string volume, string point) => $"{volume}.{point}.hashes";

    public static string PendingHashesName(string volume) => $"{volume}.pending.hashes";

    /// <summary>Removes hash tables of this volume that the state does not name (left by a crash).</summary>
    public void RemoveStrayTables(string volume, VolumeBackupState state)
    {
        foreach (string path in Directory.EnumerateFiles(_dir, volume + ".*.hashes"))
        {
            string name = Path.GetFileName(path);
            if (name != state.BaseHashes && name != PendingHashesName(volume))
                File.Delete(path);
        }
    }

    private string StatePath(string volume)
    {
        if (!WireProtocol.IsName(volume))
            throw new ArgumentException($"'{volume}' is not a volume name", nameof(volume));
        return Path.Combine(_dir, volume + ".json");
    }
}
