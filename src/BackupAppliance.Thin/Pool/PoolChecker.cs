using BackupAppliance.Thin.Check;

namespace BackupAppliance.Thin.Pool;

/// <summary>
/// <c>pool check</c>: the metadata check (everything thin_check checks and more) plus the catalogue's
/// consistency with it. On a clean result it clears needs_check, which returns the pool to write mode.
/// Run on a closed pool.
/// </summary>
public static class PoolChecker
{
    public sealed record Result(ThinCheckReport Metadata, IReadOnlyList<string> CatalogueProblems, bool ClearedNeedsCheck)
    {
        public bool IsValid => Metadata.IsValid && CatalogueProblems.Count == 0;
    }

    public static Result Check(string dir)
    {
        string meta = Path.Combine(dir, ThinPool.MetadataFile);
        if (!File.Exists(meta))
            throw new FileNotFoundException($"{dir} is not a pool (no {ThinPool.MetadataFile} file)");
        using var folderLock = ThinPool.LockFolder(dir);
        var report = ThinChecker.Check(meta, metadataSnap: false);
        var problems = new List<string>();
        PoolSettings? settings = null;
        VolumeCatalogue? catalogue = null;
        try { settings = VolumeCatalogue.LoadSettings(dir); }
        catch (Exception e) when (e is IOException or InvalidDataException) { problems.Add(e.Message); }
        try { catalogue = VolumeCatalogue.Load(dir); }
        catch (Exception e) when (e is IOException or InvalidDataException) { problems.Add(e.Message); }

        if (report.IsValid && catalogue is not null)
        {
            using var reader = ThinReader.Open(meta);
            var devices = reader.Devices().Select(d => d.Dev).ToHashSet();
            foreach (var dup in catalogue.Volumes.GroupBy(v => v.Name).Where(g => g.Count() > 1))
                problems.Add($"catalogue: the name '{dup.Key}' is used {dup.Count()} times");
            foreach (var v in catalogue.Volumes)
                if (!devices.Contains(v.DeviceId))
                    problems.Add($"catalogue: volume '{v.Name}' names thin device {v.DeviceId}, which the metadata does not have");
            var named = catalogue.Volumes.Select(v => v.DeviceId).ToHashSet();
            // A pending device is an interrupted create or delete: the next open reclaims it.
            foreach (ulong d in devices.Where(d => !named.Contains(d) && !catalogue.Pending.Contains(d)))
                problems.Add($"metadata: thin device {d} has no volume in the catalogue (an orphan: delete it or add it back)");
            if (settings is not null && reader.Superblock.DataBlockSize * 512L != settings.DataBlockSize)
                problems.Add($"pool.json says data blocks are {settings.DataBlockSize} bytes, the metadata says {reader.Superblock.DataBlockSize * 512L}");
            long need = (long)reader.NrDataBlocks * (settings?.DataBlockSize ?? 0);
            var data = new FileInfo(Path.Combine(dir, ThinPool.DataFile));
            if (!data.Exists || data.Length < need)
                problems.Add($"data file {data.FullName} is {(data.Exists ? data.Length : 0)} bytes, the metadata needs {need}");
        }

        bool cleared = false;
        if (report.IsValid && problems.Count == 0)
        {
            using var md = ThinMetadata.Open(meta);
            if (md.NeedsCheck)
            {
                md.SetNeedsCheck(false);
                cleared = true;
            }
        }
        return new Result(report, problems, cleared);
    }
}
