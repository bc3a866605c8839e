using System.Security.Cryptography;
using BackupAppliance.Integration.Tests.Support;

namespace BackupAppliance.Integration.Tests;

public sealed class NbdCopyPool() : PoolServer(new PoolSpec("512M", [new VolumeSpec("big", Size), new VolumeSpec("scratch", ScratchSize)]), "nbdcopy")
{
    public const long Size = 1L << 30;
    public const long ScratchSize = 64L << 20;
}

/// <summary>
/// Acceptance 4: nbdcopy of a 1 GiB volume with a few scattered MiB written by qemu-io reproduces a
/// reference built independently, and nbdinfo --map reports exactly the provisioned 64 KiB blocks
/// as data and everything else as hole,zero.
/// </summary>
public sealed class NbdCopyTests(NbdCopyPool pool) : IClassFixture<NbdCopyPool>
{
    private const long Block = 64 << 10;

    /// <summary>(offset, length, pattern): aligned, unaligned, tiny, across a block boundary, the last block.</summary>
    private static readonly (long Offset, long Length, byte Pattern)[] Writes =
    [
        (0, 1L << 20, 0x11),
        ((100L << 20) + 4096, 1L << 20, 0x22),
        (513L << 20, 3L << 20, 0x33),
        ((700L << 20) + 100, 10, 0x55),
        ((900L << 20) - 512, 1024, 0x66),
        (NbdCopyPool.Size - Block, Block, 0x44),
    ];

    [Fact]
    public async Task Copy_matches_the_reference_and_the_map_shows_only_provisioned_blocks()
    {
        var io = await QemuIo.RunAsync(pool.Uri("big"), Writes.Select(w => $"write -P 0x{w.Pattern:x2} {w.Offset} {w.Length}").ToArray());
        QemuIo.AssertVerified(io, Writes.Select(w => QemuIo.Wrote(w.Offset, w.Length)).ToArray());

        string copy = pool.Scratch.File("big.raw");
        await Tool.RunOkAsync("nbdcopy", pool.Uri("big"), copy);
        Assert.Equal(NbdCopyPool.Size, new FileInfo(copy).Length);
        Assert.Equal(ReferenceSha256(), await Sha.FileAsync(copy));

        var map = await NbdInfo.MapAsync(pool.Uri("big"));
        Assert.Equal(0, map[0].Offset);
        Assert.Equal(NbdCopyPool.Size, map[^1].End);
        for (int i = 1; i < map.Count; i++)
            Assert.Equal(map[i - 1].End, map[i].Offset);
        var expectedData = ProvisionedBlocks();
        Assert.Equal(expectedData, map.Where(e => e.Type == 0).Select(e => (e.Offset, e.Length)).ToList());
        Assert.All(map.Where(e => e.Type == 0), e => Assert.Equal("data", e.Description));
        Assert.All(map.Where(e => e.Type != 0), e => Assert.Equal((3, "hole,zero"), (e.Type, e.Description)));
        pool.AssertNoUnexpectedErrors();
    }

    [Fact]
    public async Task Copy_of_a_file_into_an_export_over_four_connections_reads_back_the_same()
    {
        // Four connections writing at once: the pool serialises them and loses nothing.
        var data = new byte[NbdCopyPool.ScratchSize];
        new Random(99).NextBytes(data);
        data.AsSpan(8 << 20, 8 << 20).Clear(); // a zero run nbdcopy may send as WRITE_ZEROES or skip
        string source = pool.Scratch.File("scratch-src.raw"), back = pool.Scratch.File("scratch-back.raw");
        await File.WriteAllBytesAsync(source, data);

        await Tool.RunOkAsync("nbdcopy", "--connections=4", "--requests=32", source, pool.Uri("scratch"));
        await Tool.RunOkAsync("nbdcopy", pool.Uri("scratch"), back);

        Assert.Equal(Sha.Of(data), await Sha.FileAsync(back));
        pool.AssertNoUnexpectedErrors();
    }

    /// <summary>Every 64 KiB block a write touched, merged into runs: what dm-thin provisions.</summary>
    private static List<(long Offset, long Length)> ProvisionedBlocks()
    {
        var runs = new List<(long Offset, long Length)>();
        foreach (var (offset, length, _) in Writes.OrderBy(w => w.Offset))
        {
            long start = offset / Block * Block, end = (offset + length + Block - 1) / Block * Block;
            if (runs.Count > 0 && runs[^1].Offset + runs[^1].Length >= start)
                runs[^1] = (runs[^1].Offset, Math.Max(runs[^1].Offset + runs[^1].Length, end) - runs[^1].Offset);
            else
                runs.Add((start, end - start));
        }
        return runs;
    }

    /// <summary>sha256 of 1 GiB of zeroes with the patterns laid over it, built in memory piece by piece.</summary>
    private static string ReferenceSha256()
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var chunk = new byte[8 << 20];
        for (long pos = 0; pos < NbdCopyPool.Size; pos += chunk.Length)
        {
            Array.Clear(chunk);
            foreach (var (offset, length, pattern) in Writes)
            {
                long from = Math.Max(offset, pos), to = Math.Min(offset + length, pos + chunk.Length);
                if (from < to)
                    chunk.AsSpan((int)(from - pos), (int)(to - from)).Fill(pattern);
            }
            hash.AppendData(chunk);
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }
}
