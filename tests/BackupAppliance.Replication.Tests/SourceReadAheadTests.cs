using BackupAppliance.Core;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Sending;
using BackupAppliance.Replication.Tests.Support;

namespace BackupAppliance.Replication.Tests;

public sealed class SourceReadAheadTests : IDisposable
{
    private const int Block = 4096;
    private readonly ScratchDirectory _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task ReadsInOrderReturnTheSourcesBytes()
    {
        var (source, image) = Source(seed: 1);
        await using var ahead = new SourceReadAhead(source, 3 * Block, depth: 2);
        foreach (var r in source.Ranges.Where(r => r.Kind == SourceRangeKind.Data))
        {
            for (long at = r.Offset; at < r.End;)
            {
                int n = (int)Math.Min(r.End - at, 5 * Block + 100);
                await AssertReadsAsync(ahead, image, at, n);
                at += n;
            }
        }
        Assert.True(source.Reads.All(read => AlignedBufferPool.IsAligned(read.Buffer.Span)), "every window read into aligned memory");
    }

    [Fact]
    public async Task ReadsGoingBackAcrossGapsAndOutsideTheRangesReturnTheSourcesBytes()
    {
        var (source, image) = Source(seed: 2);
        await using var ahead = new SourceReadAhead(source, 4 * Block, depth: 3);
        var random = new Random(3);
        long at = 0;
        for (int i = 0; i < 400; i++)
        {
            if (random.Next(8) == 0)
                at = random.NextInt64(image.Length); // a resend goes back; a hash pass may read anywhere
            int n = (int)Math.Min(image.Length - at, random.Next(1, 7 * Block));
            if (n == 0)
            {
                at = 0;
                continue;
            }
            await AssertReadsAsync(ahead, image, at, n);
            at += n;
        }
    }

    [Fact]
    public async Task ReadingAheadStopsAtItsDepth()
    {
        var (source, image) = Source(seed: 4);
        await using var ahead = new SourceReadAhead(source, 2 * Block, depth: 3);
        long first = source.Ranges.First(r => r.Kind == SourceRangeKind.Data).Offset;
        await AssertReadsAsync(ahead, image, first, 100);
        await Task.Delay(300); // time to run ahead as far as it may
        // The window being read from, three waiting, one read and blocked on the full queue.
        Assert.InRange(source.Reads.Count, 2, 5);
    }

    [Fact]
    public async Task AWindowGathersScatteredRangesIntoOneRead()
    {
        // Sixteen one-block data ranges, each followed by an unchanged block: windows of four blocks
        // hold four ranges each, read with one call.
        var image = SampleData.Random(32 * Block, 6);
        var ranges = Enumerable.Range(0, 16).Select(i => new SourceRange(2L * i * Block, Block, SourceRangeKind.Data)).ToList();
        var source = new RecordingSource(image, ranges, BlockHashTable.Create(_scratch.File("hashes-gather.bin"), image.Length, Block, null));
        await using (var ahead = new SourceReadAhead(source, 4 * Block, depth: 8))
        {
            foreach (var r in ranges)
                await AssertReadsAsync(ahead, image, r.Offset, Block);
        }
        var reads = source.Reads;
        Assert.Equal([0L, 8L * Block, 16L * Block, 24L * Block], reads.Select(r => r.Offset));
        Assert.All(reads, r => Assert.Equal(4 * Block, r.Buffer.Length));
    }

    [Fact]
    public async Task ASourceFailureReachesTheReader()
    {
        var (source, image) = Source(seed: 5);
        var data = source.Ranges.Where(r => r.Kind == SourceRangeKind.Data).ToList();
        source.FailAt = data[^1].Offset;
        await using var ahead = new SourceReadAhead(source, 2 * Block, depth: 2);
        await AssertReadsAsync(ahead, image, data[0].Offset, Block);
        var buffer = new byte[Block];
        var e = await Assert.ThrowsAsync<IOException>(async () => await ahead.ReadAsync(data[^1].Offset, buffer, CancellationToken.None));
        Assert.Equal($"read at {data[^1].Offset} failed", e.Message);
    }

    private static async Task AssertReadsAsync(SourceReadAhead ahead, byte[] image, long offset, int length)
    {
        var buffer = new byte[length];
        await ahead.ReadAsync(offset, buffer, CancellationToken.None);
        Assert.True(image.AsSpan((int)offset, length).SequenceEqual(buffer), $"bytes at {offset}+{length}");
    }

    /// <summary>A 1 MiB image whose ranges alternate data, gaps, zero and discard ranges of a few blocks.</summary>
    private (RecordingSource Source, byte[] Image) Source(int seed)
    {
        var image = SampleData.Random(1 << 20, seed);
        var random = new Random(seed);
        var ranges = new List<SourceRange>();
        for (long at = 0; at < image.Length;)
        {
            long length = Math.Min(image.Length - at, random.Next(1, 12) * (long)Block);
            int kind = random.Next(5);
            if (kind < 3)
                ranges.Add(new SourceRange(at, length, kind == 0 ? SourceRangeKind.Discard : SourceRangeKind.Data));
            else if (kind == 3)
                ranges.Add(new SourceRange(at, length, SourceRangeKind.Zero));
            at += length; // kind 4: a gap (unchanged)
        }
        var hashes = BlockHashTable.Create(_scratch.File($"hashes-{seed}.bin"), image.Length, Block, null);
        return (new RecordingSource(image, ranges, hashes), image);
    }

    private sealed class RecordingSource(byte[] image, IReadOnlyList<SourceRange> ranges, BlockHashTable hashes) : IBackupSource
    {
        private readonly List<(long Offset, Memory<byte> Buffer)> _reads = new();

        public string Agent => "a";
        public string Volume => "v";
        public long Size => image.Length;
        public int BlockSize => Block;
        public string? BasePoint => null;
        public string Target => "t";
        public IReadOnlyList<SourceRange> Ranges => ranges;
        public BlockHashTable Hashes => hashes;
        public long FailAt { get; set; } = -1;

        public IReadOnlyList<(long Offset, Memory<byte> Buffer)> Reads
        {
            get
            {
                lock (_reads)
                    return _reads.ToList();
            }
        }

        public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            lock (_reads)
                _reads.Add((offset, buffer));
            if (FailAt >= offset && FailAt < offset + buffer.Length)
                throw new IOException($"read at {offset} failed");
            image.AsSpan((int)offset, buffer.Length).CopyTo(buffer.Span);
            return ValueTask.CompletedTask;
        }

        /// <summary>One record for the whole gathered read (at its first range).</summary>
        public ValueTask ReadAsync(IReadOnlyList<VolumeRange> ranges, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            lock (_reads)
                _reads.Add((ranges[0].Offset, buffer));
            int at = 0;
            foreach (var r in ranges)
            {
                if (FailAt >= r.Offset && FailAt < r.End)
                    throw new IOException($"read at {r.Offset} failed");
                image.AsSpan((int)r.Offset, r.Length).CopyTo(buffer.Span[at..]);
                at += r.Length;
            }
            return ValueTask.CompletedTask;
        }
    }
}
