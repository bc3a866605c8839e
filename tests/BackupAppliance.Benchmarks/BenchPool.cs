using BackupAppliance.Thin;

namespace BackupAppliance.Benchmarks;

/// <summary>
/// A pool's metadata in a sparse temp file for one benchmark process: formats it, fills devices the
/// way a volume is written (sequential virtual blocks, freshly allocated data blocks) and deletes the
/// file on dispose.
/// </summary>
public sealed class BenchPool : IDisposable
{
    private BenchPool(string path, ThinMetadata metadata)
    {
        Path = path;
        Metadata = metadata;
    }

    public string Path { get; }
    public ThinMetadata Metadata { get; private set; }

    /// <summary>A formatted, empty pool. 128 bytes of file per mapping is room for an origin plus its rewritten leaves.</summary>
    public static BenchPool Create(long mappings, ulong nrDataBlocks)
    {
        string path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"bapp-bench-{Guid.NewGuid():N}.meta");
        using (var f = new FileStream(path, FileMode.CreateNew))
            f.SetLength(Math.Max(64L << 20, mappings * 128));
        try
        {
            return new BenchPool(path, ThinMetadata.Create(path, dataBlockSize: 128, nrDataBlocks));
        }
        catch
        {
            File.Delete(path);
            throw;
        }
    }

    /// <summary>Device <paramref name="dev"/> with vblocks 0..n-1 mapped to new data blocks, committed.</summary>
    public void WriteSequential(ulong dev, long n)
    {
        Metadata.CreateThin(dev);
        for (long v = 0; v < n; v++)
            Metadata.Insert(dev, (ulong)v, Metadata.AllocateDataBlock());
        Metadata.Commit();
    }

    /// <summary>Overwrites <paramref name="count"/> distinct random vblocks below <paramref name="n"/> with new data blocks, committed.</summary>
    public void RewriteRandom(ulong dev, long n, long count, int seed)
    {
        var rng = new Random(seed);
        var chosen = new HashSet<long>();
        while (chosen.Count < count)
        {
            long v = rng.NextInt64(n);
            if (chosen.Add(v))
                Metadata.Insert(dev, (ulong)v, Metadata.AllocateDataBlock());
        }
        Metadata.Commit();
    }

    /// <summary>Closes the writable handle so readers see only committed state.</summary>
    public void CloseWriter() => Metadata.Dispose();

    public void Dispose()
    {
        Metadata.Dispose();
        File.Delete(Path);
    }
}
