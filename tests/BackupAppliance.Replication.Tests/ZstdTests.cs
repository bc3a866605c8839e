using System.Security.Cryptography;
using BackupAppliance.Replication.Compression;
using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Tests;

/// <summary>The libzstd binding: round trips, interop with the zstd CLI both ways, and refusals.</summary>
public class ZstdTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(19)]
    [InlineData(-5)]
    [InlineData(0)]
    public void RoundTripsAtLevels(int level)
    {
        using var compressor = new ZstdCompressor(level);
        using var decompressor = new ZstdDecompressor();
        foreach (int length in new[] { 0, 1, 4096, 65536 + 7, 1 << 20 })
        {
            var data = SampleData.Disk(length, length + level);
            var frame = new byte[ZstdCompressor.MaxCompressedLength(length)];
            int size = compressor.Compress(data, frame);
            Assert.Equal(length, ZstdDecompressor.DeclaredSize(frame.AsSpan(0, size)));
            var back = new byte[length];
            Assert.Equal(length, decompressor.Decompress(frame.AsSpan(0, size), back));
            Assert.Equal(data, back);
        }
    }

    [Fact]
    public void ContextsAreReusedAcrossManyFrames()
    {
        using var compressor = new ZstdCompressor(1);
        using var decompressor = new ZstdDecompressor();
        using var frame = new PooledBufferWriter();
        var back = new byte[256 * 1024];
        for (int i = 0; i < 200; i++)
        {
            var data = SampleData.Disk(64 * 1024 * (1 + i % 4), i);
            frame.Reset();
            int size = compressor.Compress(data, frame);
            Assert.Equal(size, frame.WrittenCount);
            int n = decompressor.Decompress(frame.WrittenSpan, back);
            Assert.True(back.AsSpan(0, n).SequenceEqual(data), $"frame {i} came back different");
        }
    }

    [Fact]
    public void RealisticDataShrinksAndRandomDataStaysWithinTheBound()
    {
        using var compressor = new ZstdCompressor(3);
        var disk = SampleData.Disk(1 << 20, 1);
        var random = SampleData.Random(1 << 20, 2);
        var frame = new byte[ZstdCompressor.MaxCompressedLength(1 << 20)];
        int diskSize = compressor.Compress(disk, frame);
        int randomSize = compressor.Compress(random, frame);
        Assert.True(diskSize < disk.Length * 3 / 4, $"disk-like data compressed to {diskSize}");
        Assert.True(randomSize > random.Length && randomSize <= frame.Length, $"random data compressed to {randomSize}");
    }

    [Fact]
    public async Task OurFramesDecompressWithTheZstdCli()
    {
        using var compressor = new ZstdCompressor(3);
        var data = SampleData.Disk(3 << 20, 7);
        var frame = new byte[ZstdCompressor.MaxCompressedLength(data.Length)];
        int size = compressor.Compress(data, frame);
        var r = await ExternalProcess.RunOkAsync("zstd", ["-d", "-c", "-q"], frame.AsMemory(0, size));
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(r.Stdout));
        Assert.Equal(data.Length, r.Stdout.Length);
    }

    /// <summary>
    /// The CLI reading a pipe does not know the size, so its frame leaves it out: our decompressor
    /// then relies on the maximum alone. From a file it records the size.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task CliFramesDecompressWithOurs(bool fromFile)
    {
        var data = SampleData.Disk(2 << 20, 11);
        byte[] frame;
        if (fromFile)
        {
            var path = Path.Combine(Path.GetTempPath(), $"bapp-zstd-{Guid.NewGuid():N}");
            await File.WriteAllBytesAsync(path, data);
            try
            {
                frame = (await ExternalProcess.RunOkAsync("zstd", ["-c", "-q", "-19", path], default)).Stdout;
            }
            finally
            {
                File.Delete(path);
            }
            Assert.Equal(data.Length, ZstdDecompressor.DeclaredSize(frame));
        }
        else
        {
            frame = (await ExternalProcess.RunOkAsync("zstd", ["-c", "-q", "-1"], data)).Stdout;
            Assert.Null(ZstdDecompressor.DeclaredSize(frame));
        }
        using var decompressor = new ZstdDecompressor();
        var back = new byte[data.Length];
        Assert.Equal(data.Length, decompressor.Decompress(frame, back));
        Assert.Equal(data, back);

        // One byte short of the data: refused, whether the header says the size or not.
        var small = new byte[data.Length];
        var e = Assert.Throws<ZstdException>(() => decompressor.Decompress(frame, small, data.Length - 1));
        Assert.Contains(fromFile ? $"declares {data.Length} bytes, more than the maximum of {data.Length - 1}" : $"expands past the maximum of {data.Length - 1}", e.Message);
        Assert.Equal(70, e.ZstdErrorCode);
        Assert.True(small.AsSpan(data.Length - 1).IndexOfAnyExcept((byte)0) < 0, "a byte past the maximum was written");
    }

    [Fact]
    public void ABombIsRefusedBeforeItExpands()
    {
        using var compressor = new ZstdCompressor(19);
        var zeros = new byte[64 << 20];
        var frame = new byte[ZstdCompressor.MaxCompressedLength(zeros.Length)];
        int size = compressor.Compress(zeros, frame);
        Assert.True(size < 64 * 1024, $"64 MiB of zeros compressed to {size}");
        using var decompressor = new ZstdDecompressor();
        var e = Assert.Throws<ZstdException>(() => decompressor.Decompress(frame.AsSpan(0, size), new byte[WireProtocol.MaxFrameData]));
        Assert.Contains($"declares {zeros.Length} bytes", e.Message);
    }

    [Fact]
    public void GarbageAndDamagedFramesAreRefused()
    {
        using var decompressor = new ZstdDecompressor();
        var output = new byte[1 << 20];
        var e = Assert.Throws<ZstdException>(() => decompressor.Decompress("not zstd at all"u8, output));
        Assert.Contains("not a zstd frame", e.Message);
        Assert.Throws<ZstdException>(() => decompressor.Decompress([], output));

        using var compressor = new ZstdCompressor(3);
        var data = SampleData.Disk(1 << 20, 3);
        var frame = new byte[ZstdCompressor.MaxCompressedLength(data.Length)];
        int size = compressor.Compress(data, frame);
        e = Assert.Throws<ZstdException>(() => decompressor.Decompress(frame.AsSpan(0, size / 2), output));
        Assert.StartsWith("zstd decompression failed: ", e.Message);

        // Damage in the middle of the frame: zstd refuses or returns different bytes; either way
        // the per-block hashes catch it — here we only need zstd not to crash or overrun.
        int refused = 0;
        var rng = new Random(5);
        for (int i = 0; i < 200; i++)
        {
            var damaged = frame.AsSpan(0, size).ToArray();
            damaged[rng.Next(damaged.Length)] ^= (byte)(1 << rng.Next(8));
            try
            {
                int n = decompressor.Decompress(damaged, output);
                Assert.InRange(n, 0, output.Length);
            }
            catch (ZstdException)
            {
                refused++;
            }
        }
        Assert.True(refused > 0, "no damaged frame was refused");
        // The context still works after all those errors.
        Assert.Equal(data.Length, decompressor.Decompress(frame.AsSpan(0, size), output));
        Assert.True(output.AsSpan().SequenceEqual(data));
    }

    [Fact]
    public void BadArgumentsAndDisposalAreClearErrors()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new ZstdCompressor(ZstdCompressor.MaxLevel + 1));
        Assert.Contains($"zstd level must be from {ZstdCompressor.MinLevel} to {ZstdCompressor.MaxLevel}", e.Message);
        Assert.Equal(22, ZstdCompressor.MaxLevel);
        Assert.True(ZstdCompressor.LibraryVersion >= 10400, $"libzstd {ZstdCompressor.LibraryVersion}");

        var compressor = new ZstdCompressor(1);
        var data = SampleData.Random(10000, 1);
        var tooSmall = new byte[100];
        var z = Assert.Throws<ZstdException>(() => compressor.Compress(data, tooSmall));
        Assert.Contains("Destination buffer is too small", z.Message);
        compressor.Dispose();
        Assert.Throws<ObjectDisposedException>(() => compressor.Compress(data, new byte[20000]));

        var decompressor = new ZstdDecompressor();
        decompressor.Dispose();
        Assert.Throws<ObjectDisposedException>(() => decompressor.Decompress([], new byte[1]));
    }
}
