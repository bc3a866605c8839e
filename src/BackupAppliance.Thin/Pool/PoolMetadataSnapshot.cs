using BackupAppliance.Thin.Delta;

namespace BackupAppliance.Thin.Pool;

/// <summary>
/// A metadata snapshot held on an open <see cref="ThinPool"/>: the committed mapping trees at the
/// moment of <see cref="ThinPool.ReserveMetadataSnapshot"/>, readable without the pool's lock.
/// Disposing releases the snapshot in the pool.
/// </summary>
public sealed class PoolMetadataSnapshot : IDisposable
{
    private readonly ThinPool _pool;
    private readonly IReadOnlyList<VolumeEntry> _volumes;
    private bool _released;

    internal PoolMetadataSnapshot(ThinPool pool, ThinReader reader, ulong block, IReadOnlyList<VolumeEntry> volumes)
    {
        _pool = pool;
        Reader = reader;
        Block = block;
        _volumes = volumes;
    }

    /// <summary>The metadata block holding the snapshot's superblock copy (thin_dump -mBLOCK).</summary>
    public ulong Block { get; }

    public ThinReader Reader { get; }

    /// <summary>The catalogue as it was when the snapshot was taken.</summary>
    public IReadOnlyList<VolumeEntry> Volumes => _volumes;

    public VolumeEntry Volume(string name) =>
        _volumes.FirstOrDefault(v => v.Name == name) ?? throw new KeyNotFoundException($"no volume named '{name}' in the metadata snapshot");

    /// <summary>Every mapping of a volume as of the snapshot: (virtual block, data block), ascending.</summary>
    public List<(ulong VirtualBlock, ulong DataBlock)> Mappings(string name)
    {
        var list = new List<(ulong, ulong)>();
        Reader.VisitMappings(MappingRoot(name), leaf =>
        {
            for (int i = 0; i < leaf.NrEntries; i++)
                list.Add((leaf.Key(i), BlockTime.Unpack(leaf.Value64(i)).DataBlock));
        });
        return list;
    }

    /// <summary>The changed ranges between two volumes as of the snapshot (changes-only btree diff).</summary>
    public List<DeltaRange> Changes(string from, string to)
    {
        return DeltaCollector.Changes(Reader, MappingRoot(from), MappingRoot(to));
    }

    private ulong MappingRoot(string name) =>
        Reader.MappingRoot(Volume(name).DeviceId) ?? throw new KeyNotFoundException($"volume '{name}' has no device in the metadata snapshot");

    public void Dispose()
    {
        if (_released)
            return;
        _released = true;
        Reader.Dispose();
        _pool.ReleaseMetadataSnapshot();
    }
}
