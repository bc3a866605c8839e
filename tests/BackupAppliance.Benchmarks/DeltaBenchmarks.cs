using BackupAppliance.Thin;
using BackupAppliance.Thin.Delta;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;

namespace BackupAppliance.Benchmarks;

/// <summary>
/// Diff of a <see cref="Mappings"/>-mapping device and its snapshot after 1% of the device's blocks
/// (distinct, random) were rewritten: thin_delta's full algorithm against the changes-only walk that
/// skips shared subtrees, as ranges to a counting visitor and as thin_delta XML to a null stream.
/// <see cref="FreshReader"/> opens the metadata for each run (every needed block read and verified,
/// as a CLI run does); otherwise one reader's cache is reused.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(RunStrategy.Monitoring, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class DeltaBenchmarks
{
    public const int Mappings = 1_000_000;
    public const int Changed = Mappings / 100;

    private BenchPool? _pool;
    private ThinReader? _shared;

    [Params(false, true)]
    public bool FreshReader { get; set; }

    [GlobalSetup]
    public void GlobalSetup()
    {
        _pool = BenchPool.Create(Mappings, nrDataBlocks: Mappings + Changed);
        _pool.WriteSequential(0, Mappings);
        _pool.Metadata.CreateSnapshot(1, 0);
        _pool.Metadata.Commit();
        _pool.RewriteRandom(0, Mappings, Changed, seed: 42);
        _pool.CloseWriter();
        _shared = ThinReader.Open(_pool.Path);
    }

    [GlobalCleanup]
    public void GlobalCleanup()
    {
        _shared?.Dispose();
        _pool?.Dispose();
    }

    [Benchmark(Baseline = true)]
    public long Full() => Ranges(changesOnly: false);

    [Benchmark]
    public long ChangesOnly() => Ranges(changesOnly: true);

    [Benchmark]
    public void FullXml() => Xml(changesOnly: false);

    [Benchmark]
    public void ChangesOnlyXml() => Xml(changesOnly: true);

    private long Ranges(bool changesOnly)
    {
        var reader = FreshReader ? ThinReader.Open(_pool!.Path) : _shared!;
        try
        {
            ulong left = reader.MappingRoot(1)!.Value, right = reader.MappingRoot(0)!.Value;
            var counter = new RangeCounter();
            if (changesOnly)
            {
                var merge = new MergingDeltaVisitor(counter);
                ThinDelta.ChangesOnly(reader, left, right, merge);
                merge.Flush();
                if (counter.Blocks != Changed)
                    throw new InvalidOperationException($"changes-only found {counter.Blocks} changed blocks, expected {Changed}");
            }
            else
                ThinDelta.Full(reader, left, right, counter);
            return counter.Ranges;
        }
        finally
        {
            if (FreshReader)
                reader.Dispose();
        }
    }

    private void Xml(bool changesOnly)
    {
        var reader = FreshReader ? ThinReader.Open(_pool!.Path) : _shared!;
        try
        {
            using var w = new StreamWriter(Stream.Null, bufferSize: 1 << 16) { NewLine = "\n" };
            DeltaXml.Write(reader, 1, 0, verbose: false, changesOnly, w);
        }
        finally
        {
            if (FreshReader)
                reader.Dispose();
        }
    }

    private sealed class RangeCounter : IDeltaVisitor
    {
        public long Ranges;
        public ulong Blocks;

        public void Range(in DeltaRange r)
        {
            Ranges++;
            if (r.Kind != DeltaKind.Same)
                Blocks += r.Length;
        }
    }
}
