using BackupAppliance.Thin;
using BenchmarkDotNet.Attributes;

namespace BackupAppliance.Benchmarks;

/// <summary>
/// <see cref="ThinMetadata.Lookup"/> in a device of <see cref="Mappings"/> mappings (the whole tree
/// fits the block cache after the first pass). Figures are per lookup; the budget is 0 B allocated.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(warmupCount: 2, iterationCount: 5)]
public class MappingLookupBenchmarks
{
    public const int Mappings = 1_000_000;
    public const int Batch = 1024;

    private BenchPool? _pool;
    private ThinMetadata _md = null!;
    private readonly ulong[] _random = new ulong[Batch];
    private readonly ulong[] _sequential = new ulong[Batch];
    private readonly ulong[] _missing = new ulong[Batch];

    [GlobalSetup]
    public void GlobalSetup()
    {
        _pool = BenchPool.Create(Mappings, nrDataBlocks: Mappings);
        _pool.WriteSequential(0, Mappings);
        _md = _pool.Metadata;
        var rng = new Random(42);
        for (int i = 0; i < Batch; i++)
        {
            _random[i] = (ulong)rng.Next(Mappings);
            _sequential[i] = (ulong)(Mappings / 2 + i);
            _missing[i] = (ulong)(Mappings + rng.Next(Mappings));
        }
    }

    [GlobalCleanup]
    public void GlobalCleanup() => _pool?.Dispose();

    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public ulong LookupRandomHit() => LookupAll(_random);

    [Benchmark(OperationsPerInvoke = Batch)]
    public ulong LookupSequentialHit() => LookupAll(_sequential);

    [Benchmark(OperationsPerInvoke = Batch)]
    public ulong LookupMiss() => LookupAll(_missing);

    private ulong LookupAll(ulong[] vblocks)
    {
        ulong sum = 0;
        foreach (ulong v in vblocks)
        {
            if (_md.Lookup(0, v) is { } m)
                sum += m.DataBlock;
        }
        return sum;
    }
}
