using BackupAppliance.Thin;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;

namespace BackupAppliance.Benchmarks;

/// <summary>
/// Inserting <see cref="N"/> mappings into a fresh thin device, then one commit. Figures are per
/// mapping (the commit is amortised over them). Each iteration gets a freshly formatted file.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class MappingInsertBenchmarks
{
    public const int N = 100_000;

    private ulong[] _sequential = [];
    private ulong[] _random = [];
    private BenchPool? _pool;

    [GlobalSetup]
    public void GlobalSetup()
    {
        _sequential = new ulong[N];
        for (int i = 0; i < N; i++)
            _sequential[i] = (ulong)i;
        // The same keys in a seeded random order: the trees end up holding the same set.
        _random = (ulong[])_sequential.Clone();
        new Random(42).Shuffle(_random);
    }

    [IterationSetup]
    public void IterationSetup()
    {
        _pool = BenchPool.Create(N, nrDataBlocks: N);
        _pool.Metadata.CreateThin(0);
        _pool.Metadata.Commit();
    }

    [IterationCleanup]
    public void IterationCleanup()
    {
        _pool?.Dispose();
        _pool = null;
    }

    [GlobalCleanup]
    public void GlobalCleanup() => IterationCleanup();

    [Benchmark(Baseline = true, OperationsPerInvoke = N)]
    public void InsertSequentialThenCommit() => InsertAll(_sequential);

    [Benchmark(OperationsPerInvoke = N)]
    public void InsertRandomThenCommit() => InsertAll(_random);

    private void InsertAll(ulong[] vblocks)
    {
        ThinMetadata md = _pool!.Metadata;
        foreach (ulong v in vblocks)
            md.Insert(0, v, md.AllocateDataBlock());
        md.Commit();
    }
}
