using BackupAppliance.Core;
using BackupAppliance.Nbd;
using BackupAppliance.ChangeTracking;

namespace BackupAppliance.Agent;

/// <summary>
/// Every volume of a pool as an NBD export under its name, writes going through the volume's era
/// tracker; snapshots read-only. Reads the catalogue live.
/// </summary>
public sealed class TrackedPoolExports : INbdExportProvider
{
    private readonly TrackedPool _pool;

    public TrackedPoolExports(TrackedPool pool) => _pool = pool;

    public IReadOnlyList<NbdExportInfo> List() =>
        _pool.Pool.Volumes.Select(v => new NbdExportInfo(v.Name,
            v.SnapshotOf is { } of ? $"snapshot of {of} (read-only)" : "thin volume", v.Size, v.ReadOnly)).ToList();

    public IBlockVolume? Open(string name) =>
        _pool.Pool.Volumes.Any(v => v.Name == name) ? _pool.OpenVolume(name) : null;
}
