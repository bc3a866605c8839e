using BackupAppliance.PersistentData;
using BackupAppliance.Thin;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;

namespace BackupAppliance.Benchmarks;

/// <summary>
/// Walking every mapping of a <see cref="Mappings"/>-mapping device with
/// <see cref="ThinReader.VisitMappings"/>: through a reader whose cache already holds the tree, and
/// through a freshly opened reader (every leaf read and verified, as a CLI run does).
/// </summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class MappingIterationBenchmarks
{
    public const int Mappings = 1_000_000;

    private BenchPool? _pool;
    private ThinReader? _warm;
    private ulong _root;
    private ulong _sum;
    private long _count;
    private Action<BTreeNode> _leaf = null!;

    [GlobalSetup]
    public void GlobalSetup()
    {
        _pool = BenchPool.Create(Mappings, nrDataBlocks: Mappings);
        _pool.WriteSequential(0, Mappings);
        _pool.CloseWriter();
        _warm = ThinReader.Open(_pool.Path);
        _root = _warm.MappingRoot(0)!.Value;
        _leaf = Leaf; // one delegate, not one per call
    }

    [GlobalCleanup]
    public void GlobalCleanup()
    {
        _warm?.Dispose();
        _pool?.Dispose();
    }

    [Benchmark(Baseline = true)]
    public long VisitAllWarmReader()
    {
        _count = 0;
        _warm!.VisitMappings(_root, _leaf);
        return Check();
    }

    [Benchmark]
    public long VisitAllFreshReader()
    {
        _count = 0;
        using var reader = ThinReader.Open(_pool!.Path);
        reader.VisitMappings(_root, _leaf);
        return Check();
    }

    private void Leaf(BTreeNode n)
    {
        int nr = n.NrEntries;
        for (int i = 0; i < nr; i++)
            _sum += n.Value64(i) >> 24;
        _count += nr;
    }

    private long Check() => _count == Mappings
        ? _count
        : throw new InvalidOperationException($"visited {_count} mappings, expected {Mappings}");
}
