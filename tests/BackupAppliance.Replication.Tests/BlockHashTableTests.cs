using System.Security.Cryptography;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Tests;

/// <summary>
/// The block hash table's sparse file: blocks that read as zeros take no disk space, and the digest,
/// copies and reads give the same hashes as a table with every zero hash written out.
/// </summary>
public sealed class BlockHashTableTests : IDisposable
{
    private const int Block = 64 * 1024;
    private readonly ScratchDirectory _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [Fact]
    public async Task A_table_of_a_large_empty_image_takes_no_space_and_has_the_zero_image_digest()
    {
        long size = (64L << 30) + 4096; // 1 Mi blocks and a short one: a table of 16 MiB and 16 bytes
        using var table = BlockHashTable.Create(_scratch.File("empty.bin"), size, Block);
        table.Flush();
        Assert.Equal((16L << 20) + 16, new FileInfo(table.Path).Length);
        long allocated = await AllocatedBytesAsync(table.Path);
        Assert.True(allocated <= 64 * 1024, $"{allocated} bytes allocated");
        Assert.Equal(ReferenceDigest(size, new Dictionary<long, byte[]>()), table.ComputeDigest());
    }

    [Fact]
    public async Task Digest_copy_and_reads_equal_those_of_hashes_written_out_in_full()
    {
        long size = 8L * 1024 * Block + 4096; // 8193 blocks, a short last one
        var rng = new Random(5);
        var set = new Dictionary<long, byte[]>();
        using var table = BlockHashTable.Create(_scratch.File("a.bin"), size, Block);
        // Hashes here and there, a stretch of them, then some zeroed again (a partial page of entries).
        foreach (long b in new long[] { 0, 1, 127, 128, 129, 4000, 8191, 8192 })
            set[b] = Set(table, b, rng);
        for (long b = 5000; b < 5300; b++)
            set[b] = Set(table, b, rng);
        table.SetZero(5100, 37);
        table.SetZero(8192, 1);
        for (long b = 5100; b < 5137; b++)
            set.Remove(b);
        set.Remove(8192);

        var expected = ReferenceDigest(size, set);
        Assert.Equal(expected, table.ComputeDigest());
        table.Flush();
        long allocated = await AllocatedBytesAsync(table.Path);
        Assert.True(allocated < new FileInfo(table.Path).Length / 4, $"{allocated} bytes allocated");

        using var copy = BlockHashTable.Create(_scratch.File("b.bin"), size, Block, table);
        Assert.Equal(expected, copy.ComputeDigest());
        var one = new byte[WireProtocol.BlockHashSize];
        copy.Get(5000, one);
        Assert.Equal(set[5000], one);
        copy.Get(5100, one);
        Assert.Equal(BlockHashes.OfZeros(Block), one);
        copy.Get(8192, one);
        Assert.Equal(BlockHashes.OfZeros(4096), one); // the short last block's zero hash

        // A table written out in full (every zero hash stored, as tables were before) reads the same.
        string full = _scratch.File("full.bin");
        using (var f = File.Create(full))
            for (long b = 0; b < 8193; b++)
                f.Write(set.TryGetValue(b, out var h) ? h : BlockHashes.OfZeros(b == 8192 ? 4096 : Block));
        using var old = BlockHashTable.Open(full, size, Block);
        Assert.Equal(expected, old.ComputeDigest());
    }

    private static byte[] Set(BlockHashTable table, long block, Random rng)
    {
        var h = new byte[WireProtocol.BlockHashSize];
        rng.NextBytes(h);
        table.Set(block, h);
        return h;
    }

    /// <summary>The digest by <see cref="ImageDigest"/>: the given blocks' hashes, zeros elsewhere.</summary>
    private static byte[] ReferenceDigest(long size, IReadOnlyDictionary<long, byte[]> hashes)
    {
        using var digest = new ImageDigest(size, Block);
        long blocks = (size + Block - 1) / Block;
        long at = 0;
        foreach (var (block, hash) in hashes.OrderBy(p => p.Key))
        {
            digest.AppendZeroBlocks(block - at);
            digest.AppendHashes(hash);
            at = block + 1;
        }
        digest.AppendZeroBlocks(blocks - at);
        return digest.Finish();
    }

    /// <summary>The file's allocated bytes, as stat(1) reports them.</summary>
    private static async Task<long> AllocatedBytesAsync(string path)
    {
        var r = await ExternalProcess.RunOkAsync("stat", ["-c", "%b %B", path]);
        var parts = r.Text.Trim().Split(' ');
        return long.Parse(parts[0]) * long.Parse(parts[1]);
    }
}
