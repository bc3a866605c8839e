using System.Text.Json;

namespace BackupAppliance.Thin.Pool;

/// <summary>
/// Volume names → thin device ids, in <c>catalogue.json</c>. Written atomically (temp file, fsync,
/// rename, fsync of the folder), so a crash leaves the old or the new catalogue, never a mix.
/// </summary>
public sealed class VolumeCatalogue
{
    public const string FileName = "catalogue.json";
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public List<VolumeEntry> Volumes { get; init; } = new();
    public ulong NextDeviceId { get; set; }

    /// <summary>
    /// Thin devices being created or deleted: written before a create changes the metadata and with
    /// a delete's removal of the volume, so a crash between the metadata commit and the catalogue
    /// write leaves a device the pool can find and reclaim on open, never one nobody knows of.
    /// </summary>
    public List<ulong> Pending { get; init; } = new();

    public VolumeEntry? Find(string name) => Volumes.Find(v => v.Name == name);

    public static VolumeCatalogue Load(string dir)
    {
        string path = Path.Combine(dir, FileName);
        try
        {
            return JsonSerializer.Deserialize<VolumeCatalogue>(File.ReadAllText(path), Json)
                ?? throw new InvalidDataException($"{path} is empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"catalogue {path} is not valid: {e.Message}", e);
        }
    }

    public void Save(string dir) => AtomicFile.Write(Path.Combine(dir, FileName), JsonSerializer.SerializeToUtf8Bytes(this, Json));

    public static PoolSettings LoadSettings(string dir)
    {
        string path = Path.Combine(dir, PoolSettings.FileName);
        try
        {
            return JsonSerializer.Deserialize<PoolSettings>(File.ReadAllText(path), Json)
                ?? throw new InvalidDataException($"{path} is empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"pool settings {path} are not valid: {e.Message}", e);
        }
    }

    public static void SaveSettings(string dir, PoolSettings settings) =>
        AtomicFile.Write(Path.Combine(dir, PoolSettings.FileName), JsonSerializer.SerializeToUtf8Bytes(settings, Json));
}
