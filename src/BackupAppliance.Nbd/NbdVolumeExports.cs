using BackupAppliance.Core;

namespace BackupAppliance.Nbd;

/// <summary>
/// An <see cref="INbdExportProvider"/> over volumes held in memory, each exported under its
/// <see cref="IBlockVolume.Name"/>. Exports may be added and removed while the server runs; a
/// connection already in transmission keeps the volume it opened.
/// </summary>
public sealed class NbdVolumeExports : INbdExportProvider
{
    private readonly object _lock = new();
    private List<(IBlockVolume Volume, string Description)> _exports = [];

    public NbdVolumeExports(params IEnumerable<IBlockVolume> volumes)
    {
        foreach (var v in volumes)
            Add(v);
    }

    /// <summary>Adds an export named after the volume; the first added is the default.</summary>
    public void Add(IBlockVolume volume, string description = "")
    {
        ArgumentNullException.ThrowIfNull(volume);
        ArgumentNullException.ThrowIfNull(description);
        lock (_lock)
        {
            if (_exports.Exists(e => e.Volume.Name == volume.Name))
                throw new ArgumentException($"an export named '{volume.Name}' already exists", nameof(volume));
            _exports = [.. _exports, (volume, description)];
        }
    }

    /// <summary>Removes an export; returns false if there was none by that name.</summary>
    public bool Remove(string name)
    {
        lock (_lock)
        {
            var next = _exports.FindAll(e => e.Volume.Name != name);
            bool removed = next.Count != _exports.Count;
            _exports = next;
            return removed;
        }
    }

    public IReadOnlyList<NbdExportInfo> List()
    {
        List<(IBlockVolume Volume, string Description)> snapshot;
        lock (_lock)
            snapshot = _exports;
        return snapshot.ConvertAll(e => new NbdExportInfo(e.Volume.Name, e.Description, e.Volume.Size, e.Volume.IsReadOnly));
    }

    public IBlockVolume? Open(string name)
    {
        lock (_lock)
        {
            foreach (var e in _exports)
                if (e.Volume.Name == name)
                    return e.Volume;
        }
        return null;
    }
}
