using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin.Check;

/// <summary>
/// Read-only access to the raw 4 KiB blocks of a metadata file, with no validation: the checker and
/// the lister judge every block themselves, so they can look at files the engine would refuse.
/// </summary>
public sealed class RawMetadataFile : IDisposable
{
    private readonly BlockManager _bm;

    public RawMetadataFile(string path)
    {
        _bm = new BlockManager(path, writable: false, cacheBlocks: 64);
    }

    /// <summary>Whole blocks in the file.</summary>
    public ulong NrBlocks => _bm.NrBlocks;

    /// <summary>The block's bytes, or null when it lies beyond the end of the file.</summary>
    public byte[]? Read(ulong location)
    {
        if (location >= _bm.NrBlocks)
            return null;
        var data = new byte[BlockManager.BlockSize];
        _bm.ReadRaw(location, data);
        return data;
    }

    public void Dispose() => _bm.Dispose();
}
