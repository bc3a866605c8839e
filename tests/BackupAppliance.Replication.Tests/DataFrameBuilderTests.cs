using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Sending;
using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Tests;

/// <summary>
/// The frames a builder makes depend only on the source, never on how many threads compress:
/// a resend rebuilds exactly what was sent. Data runs go out in pieces of at most 512 KiB.
/// </summary>
public sealed class DataFrameBuilderTests : IDisposable
{
    private const int Block = 64 * 1024;
    private readonly ScratchDirectory _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task FramesAreTheSameWhateverTheNumberOfCompressionThreads()
    {
        var image = MixedImage(48 * Block, seed: 1);
        var ranges = new List<SourceRange>
        {
            new(0, 20L * Block, SourceRangeKind.Data),
            new(20L * Block, 2L * Block, SourceRangeKind.Discard),
            new(24L * Block, 24L * Block, SourceRangeKind.Data),
        };
        var one = await BuildAllAsync(image, ranges, threads: 1, "one");
        var four = await BuildAllAsync(image, ranges, threads: 4, "four");
        Assert.True(one.Frames.Count > 2, $"{one.Frames.Count} frames");
        Assert.Equal(one.Frames.Count, four.Frames.Count);
        for (int i = 0; i < one.Frames.Count; i++)
            Assert.True(one.Frames[i].AsSpan().SequenceEqual(four.Frames[i]), $"frame {i + 1} differs");
        Assert.Equal(one.Digest, four.Digest);

        // Every data extent is a piece of at most 512 KiB, and the frames cover every data byte.
        long dataBytes = 0;
        foreach (var bytes in four.Frames)
        {
            var frame = Assert.IsType<DataFrame>(FrameDecoder.Decode(bytes).Message);
            foreach (var e in frame.Extents.Where(e => e.Kind == ExtentKind.Data))
            {
                Assert.InRange(e.Length, 1, DataFrameBuilder.PieceBytes);
                dataBytes += e.Length;
            }
        }
        long zeroBlocksInData = Enumerable.Range(0, 48).Count(b => (b < 20 || b >= 24) && image.AsSpan(b * Block, Block).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal((44 - zeroBlocksInData) * Block, dataBytes); // blocks 0-19 and 24-47
    }

    [Fact]
    public async Task GoingBackPastTheFrameBuiltAheadRebuildsTheSameFrames()
    {
        // The builder builds the next frame while the caller sends one; a go-back (Seek) must drop it
        // and rebuild from the position asked for, byte for byte what was built the first time.
        var image = MixedImage(128 * Block, seed: 2);
        var ranges = new List<SourceRange> { new(0, 128L * Block, SourceRangeKind.Data) };
        var straight = await BuildAllAsync(image, ranges, threads: 2, "straight");
        Assert.True(straight.Frames.Count >= 4, $"{straight.Frames.Count} frames");

        using var hashes = BlockHashTable.Create(_scratch.File("back.hashes"), image.Length, Block, null);
        var source = new MemoryBackupSource("a", "v", image, Block, null, "t", ranges, hashes);
        await using var builder = new DataFrameBuilder(source, compressionLevel: 1, compressionThreads: 2);
        using var encoder = new FrameEncoder();
        var starts = new List<long>();
        var frames = new List<byte[]>();
        for (int i = 0; i < 3; i++)
        {
            starts.Add(builder.Position);
            frames.Add(encoder.Encode((ulong)i + 1, (await builder.NextAsync(1, CancellationToken.None))!).ToArray());
        }
        builder.Seek(starts[1]); // back to frame 2, while frame 4 was being built ahead
        frames.RemoveRange(1, 2);
        while (await builder.NextAsync(1, CancellationToken.None) is { } frame)
            frames.Add(encoder.Encode((ulong)frames.Count + 1, frame).ToArray());
        await builder.HashUpToAsync(image.Length, CancellationToken.None);
        hashes.Flush();

        Assert.Equal(straight.Frames.Count, frames.Count);
        for (int i = 0; i < frames.Count; i++)
            Assert.True(straight.Frames[i].AsSpan().SequenceEqual(frames[i]), $"frame {i + 1} differs");
        Assert.Equal(straight.Digest, hashes.ComputeDigest());
    }

    private async Task<(List<byte[]> Frames, byte[] Digest)> BuildAllAsync(byte[] image, List<SourceRange> ranges, int threads, string name)
    {
        using var hashes = BlockHashTable.Create(_scratch.File($"{name}.hashes"), image.Length, Block, null);
        var source = new MemoryBackupSource("a", "v", image, Block, null, "t", ranges, hashes);
        await using var builder = new DataFrameBuilder(source, compressionLevel: 1, compressionThreads: threads);
        using var encoder = new FrameEncoder();
        var frames = new List<byte[]>();
        while (await builder.NextAsync(1, CancellationToken.None) is { } frame)
            frames.Add(encoder.Encode((ulong)frames.Count + 1, frame).ToArray());
        await builder.HashUpToAsync(image.Length, CancellationToken.None);
        hashes.Flush();
        return (frames, hashes.ComputeDigest());
    }

    /// <summary>Blocks of text-like (compressible) bytes, random (incompressible) bytes and zeros, in a seeded order.</summary>
    private static byte[] MixedImage(int length, int seed)
    {
        var image = new byte[length];
        var random = new Random(seed);
        var compressible = SampleData.Disk(Block, seed);
        for (int at = 0; at < length; at += Block)
        {
            switch (random.Next(4))
            {
                case 0: break; // zeros
                case 1: random.NextBytes(image.AsSpan(at, Block)); break;
                default: compressible.CopyTo(image, at); image[at] = (byte)random.Next(1, 255); break;
            }
        }
        return image;
    }
}
