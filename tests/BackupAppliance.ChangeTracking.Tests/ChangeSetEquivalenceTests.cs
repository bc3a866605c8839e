using System.Text.RegularExpressions;
using BackupAppliance.Core;
using BackupAppliance.TestSupport;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.ChangeTracking.Tests;

/// <summary>
/// The changed set of a volume between two snapshots, found four ways that must agree: by era
/// (dm-era "written since", no old snapshot needed), by the changes-only btree diff of the two
/// snapshots, by comparing the two images byte for byte, and by the real thin_delta on the pool's
/// metadata (through a metadata snapshot held while the pool is open).
/// </summary>
public sealed class ChangeSetEquivalenceTests
{
    private const int BlockSize = 64 * 1024;

    [Theory]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(3, true)]
    [InlineData(4, false)]
    [InlineData(5, false)]
    public async Task ByEraBySnapshotDiffByImagesAndByThinDeltaAgree(int seed, bool contentChangingOnly)
    {
        using var dir = Tool.TempDir();
        await using var pool = TrackedPool.Create(dir.File("pool"), 256L << 20, new PoolSettings { DataBlockSize = BlockSize }, commitInterval: TimeSpan.Zero);
        long size = 300L * BlockSize + 12_345; // a partial tail block
        var volume = pool.CreateVolume("v", size);
        var work = new Workload(volume, seed);
        await work.RunAsync(400, contentChangingOnly);
        for (int round = 1; round <= 3; round++)
        {
            string baseName = $"base{round}", nextName = $"next{round}";
            var baseSnap = await pool.SnapshotAsync("v", baseName, CancellationToken.None);
            var baseImage = (byte[])work.Model.Clone();
            await work.RunAsync(60 * round, contentChangingOnly);
            await pool.SnapshotAsync("v", nextName, CancellationToken.None);

            var byEra = await pool.ChangesSinceEraAsync("v", (uint)baseSnap.ChangeEpoch!.Value, asOf: nextName, CancellationToken.None);
            var byDiff = pool.ChangesSinceSnapshot(nextName, baseName);
            var images = await CompareImages(pool, baseName, nextName, baseImage, work.Model);
            var thinDelta = ThinDeltaBlocks(pool, baseName, nextName);

            var eraData = byEra.Blocks(unmapped: false).ToHashSet();
            var diffData = byDiff.Blocks(unmapped: false).ToHashSet();
            Assert.NotEmpty(diffData);
            Assert.Equal(Sorted(diffData), Sorted(eraData));
            Assert.Equal(Sorted(thinDelta.Data), Sorted(diffData));
            var diffUnmapped = byDiff.Blocks(unmapped: true).ToHashSet();
            Assert.Equal(Sorted(thinDelta.Unmapped), Sorted(diffUnmapped));
            Assert.Equal(Sorted(images.NowUnmapped), Sorted(diffUnmapped));
            // dm-era marks a discard without knowing whether the base had the block: its extra
            // "unmapped" blocks must be ones the base did not map either (discarding them is a no-op).
            var eraUnmapped = byEra.Blocks(unmapped: true).ToHashSet();
            Assert.Subset(eraUnmapped, diffUnmapped);
            Assert.All(eraUnmapped.Except(diffUnmapped), b => Assert.DoesNotContain(b, images.MappedInBase));
            if (contentChangingOnly)
                Assert.Equal(Sorted(images.ContentChanged), Sorted(diffData));
            else
                Assert.Subset(diffData, images.ContentChanged);
            // The sets are what they claim: applying them to the base image gives the next one.
            var rebuilt = (byte[])baseImage.Clone();
            var next = pool.Pool.OpenVolume(nextName);
            foreach (var e in byEra.Extents)
            {
                if (e.IsHole)
                    Array.Clear(rebuilt, (int)e.Offset, (int)e.Length);
                else
                    await next.ReadAsync(e.Offset, rebuilt.AsMemory((int)e.Offset, (int)e.Length), CancellationToken.None);
            }
            Assert.Equal(Sha(work.Model), Sha(rebuilt));
        }
    }

    private static long[] Sorted(IEnumerable<long> s) => s.Order().ToArray();

    private static string Sha(byte[] b) => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(b));

    private sealed record ImageDiff(HashSet<long> ContentChanged, HashSet<long> NowUnmapped, HashSet<long> MappedInBase);

    /// <summary>Brute force: every block of both snapshots read and compared; mappings from the allocation map.</summary>
    private static async Task<ImageDiff> CompareImages(TrackedPool pool, string baseName, string nextName, byte[] baseModel, byte[] nextModel)
    {
        var a = pool.Pool.OpenVolume(baseName);
        var b = pool.Pool.OpenVolume(nextName);
        var imageA = new byte[a.Size];
        var imageB = new byte[b.Size];
        await a.ReadAsync(0, imageA, CancellationToken.None);
        await b.ReadAsync(0, imageB, CancellationToken.None);
        Assert.Equal(Sha(baseModel), Sha(imageA));
        Assert.Equal(Sha(nextModel), Sha(imageB));
        var mappedA = await Mapped(a);
        var mappedB = await Mapped(b);
        var changed = new HashSet<long>();
        var unmapped = new HashSet<long>();
        long blocks = (a.Size + BlockSize - 1) / BlockSize;
        for (long k = 0; k < blocks; k++)
        {
            int off = (int)(k * BlockSize), len = (int)Math.Min(BlockSize, a.Size - off);
            bool differs = !imageA.AsSpan(off, len).SequenceEqual(imageB.AsSpan(off, len));
            if (mappedB.Contains(k) && differs)
                changed.Add(k);
            if (mappedA.Contains(k) && !mappedB.Contains(k))
                unmapped.Add(k);
        }
        return new ImageDiff(changed, unmapped, mappedA);
    }

    private static async Task<HashSet<long>> Mapped(IBlockVolume v)
    {
        var set = new HashSet<long>();
        foreach (var e in await v.GetAllocationAsync(0, v.Size, CancellationToken.None))
            if (!e.IsHole)
                for (long k = e.Offset / BlockSize; k * BlockSize < e.Offset + e.Length; k++)
                    set.Add(k);
        return set;
    }

    /// <summary>The real thin_delta on the open pool's metadata, through a metadata snapshot.</summary>
    private static (HashSet<long> Data, HashSet<long> Unmapped) ThinDeltaBlocks(TrackedPool pool, string left, string right)
    {
        using var held = pool.Pool.ReserveMetadataSnapshot();
        var r = Tool.Run("thin_delta", $"--metadata-snap={held.Block}", "--snap1", held.Volume(left).DeviceId.ToString(),
            "--snap2", held.Volume(right).DeviceId.ToString(), Path.Combine(pool.Directory, ThinPool.MetadataFile));
        Assert.True(r.ExitCode == 0, r.Stderr);
        var data = new HashSet<long>();
        var unmapped = new HashSet<long>();
        foreach (Match m in Regex.Matches(r.Stdout, "<(left_only|right_only|different) begin=\"(\\d+)\" length=\"(\\d+)\""))
        {
            long begin = long.Parse(m.Groups[2].Value), len = long.Parse(m.Groups[3].Value);
            var into = m.Groups[1].Value == "left_only" ? unmapped : data;
            for (long k = begin; k < begin + len; k++)
                into.Add(k);
        }
        Assert.Contains("<diff left=", r.Stdout);
        return (data, unmapped);
    }
}
