using BackupAppliance.Benchmarks.Replication;
using BackupAppliance.Replication.Compression;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;

namespace BackupAppliance.Benchmarks;

/// <summary>
/// One full data frame: <see cref="WireProtocol.MaxFrameData"/> bytes (960 KiB) of block data in
/// 64 KiB blocks, one data extent per block. <see cref="Content"/> "disk" is disk-like data (zstd
/// level 1 shrinks it), "random" is incompressible, which makes the largest frame (~1 MiB).
/// Encode and Decode are the frame codec alone (payloads already compressed); Send is an agent's
/// CPU work per frame (SHA-256 per block, zstd level 1, encode); Receive is a receiver's (decode,
/// decompress each extent within its length, verify every block hash). MB/s is of block data.
/// </summary>
[MemoryDiagnoser]
[SimpleJob(warmupCount: 3, iterationCount: 10)]
[Config(typeof(ThroughputConfig))]
public class WireBenchmarks
{
    private const int Block = 64 * 1024;
    private const int Blocks = WireProtocol.MaxFrameData / Block;

    private byte[] _data = [];
    private DataFrame _frame = null!;
    private byte[] _encoded = [];
    private readonly FrameEncoder _encoder = new();
    private readonly ZstdCompressor _zstd = new(1);
    private readonly ZstdDecompressor _unzstd = new();
    private readonly byte[] _payloads = new byte[Blocks * ZstdCompressor.MaxCompressedLength(Block)];
    private readonly byte[] _hashes = new byte[Blocks * WireProtocol.BlockHashSize];
    private readonly WireExtent[] _extents = new WireExtent[Blocks];
    private readonly byte[] _image = new byte[Block];

    [Params("disk", "random")]
    public string Content { get; set; } = "disk";

    [GlobalSetup]
    public void Setup()
    {
        _data = Content == "disk" ? SampleData.Disk(WireProtocol.MaxFrameData, 42) : SampleData.Random(WireProtocol.MaxFrameData, 42);
        _frame = BuildFrame();
        _encoded = _encoder.Encode(1, _frame).ToArray();
        Console.WriteLine($"// {Content}: frame of {_encoded.Length:N0} bytes for {_data.Length:N0} bytes of data");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _encoder.Dispose();
        _zstd.Dispose();
        _unzstd.Dispose();
    }

    [Benchmark]
    public int Encode() => _encoder.Encode(2, _frame).Length;

    [Benchmark]
    public int Decode() => ((DataFrame)FrameDecoder.Decode(_encoded).Message).Extents.Count;

    [Benchmark]
    public int Send() => _encoder.Encode(3, BuildFrame()).Length;

    [Benchmark]
    public int Receive()
    {
        var frame = (DataFrame)FrameDecoder.Decode(_encoded).Message;
        int bad = 0;
        for (int i = 0; i < frame.Extents.Count; i++)
        {
            var e = frame.Extents[i];
            int n = _unzstd.Decompress(e.Payload.Span, _image, (int)e.Length);
            if (n != e.Length || BlockHashes.FindMismatch(_image.AsSpan(0, n), Block, e.Hashes.Span) >= 0)
                bad++;
        }
        return bad;
    }

    private DataFrame BuildFrame()
    {
        int used = 0;
        for (int i = 0; i < Blocks; i++)
        {
            var block = _data.AsSpan(i * Block, Block);
            var hash = _hashes.AsMemory(i * WireProtocol.BlockHashSize, WireProtocol.BlockHashSize);
            BlockHashes.Compute(block, Block, hash.Span);
            int n = _zstd.Compress(block, _payloads.AsSpan(used));
            _extents[i] = WireExtent.Data((1L << 30) + (long)i * Block, Block, _payloads.AsMemory(used, n), hash);
            used += n;
        }
        return new DataFrame(7, _extents);
    }

    private sealed class ThroughputConfig : ManualConfig
    {
        public ThroughputConfig() => AddColumn(new ThroughputColumn(WireProtocol.MaxFrameData));
    }
}
