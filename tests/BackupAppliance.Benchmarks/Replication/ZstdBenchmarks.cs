using BackupAppliance.Benchmarks.Replication;
using BackupAppliance.Replication.Compression;
using BackupAppliance.Replication.Tests.Support;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;

namespace BackupAppliance.Benchmarks;

/// <summary>
/// zstd through libzstd.so.1 with reused contexts on 1 MiB of disk-like data (text, machine code,
/// zeros, random in 64 KiB pieces), at levels 1 and 3. MB/s is of uncompressed bytes.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(warmupCount: 3, iterationCount: 10)]
[Config(typeof(ThroughputConfig))]
public class ZstdBenchmarks
{
    private const int Size = 1 << 20;

    private byte[] _data = [];
    private readonly byte[] _compressed = new byte[ZstdCompressor.MaxCompressedLength(Size)];
    private readonly byte[] _output = new byte[Size];
    private int _compressedLength;
    private ZstdCompressor _zstd = null!;
    private readonly ZstdDecompressor _unzstd = new();

    [Params(1, 3)]
    public int Level { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _data = SampleData.Disk(Size, 42);
        _zstd = new ZstdCompressor(Level);
        _compressedLength = _zstd.Compress(_data, _compressed);
        Console.WriteLine($"// level {Level}: {Size:N0} -> {_compressedLength:N0} bytes (ratio {(double)Size / _compressedLength:F2})");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _zstd.Dispose();
        _unzstd.Dispose();
    }

    [Benchmark]
    public int Compress() => _zstd.Compress(_data, _compressed);

    [Benchmark]
    public int Decompress() => _unzstd.Decompress(_compressed.AsSpan(0, _compressedLength), _output);

    private sealed class ThroughputConfig : ManualConfig
    {
        public ThroughputConfig() => AddColumn(new ThroughputColumn(Size));
    }
}
