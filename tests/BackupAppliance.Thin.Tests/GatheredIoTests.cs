using System.Text.RegularExpressions;
using BackupAppliance.Core;
using BackupAppliance.Thin.Pool;
using BackupAppliance.Thin.Tests.Support;
using static BackupAppliance.Thin.Tests.Support.VolumeBytes;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// Streaming reads and writes of several ranges at once (a backup's scattered changed blocks): the
/// same bytes as one range at a time, new blocks for scattered ranges placed side by side in the
/// data file, and bad range lists refused without a change.
/// </summary>
public partial class GatheredIoTests
{
    private const int Bs = 65536;

    [Fact]
    public async Task AGatheredWriteStoresEachRangesBytesAndPlacesItsNewBlocksSideBySide()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        var expected = new byte[32 * Bs];
        var oldShared = Bytes(2 * Bs, 1);
        await using (var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings()))
        {
            var v = pool.CreateVolume("v", 32L * Bs);
            await v.WriteAsync(20L * Bs, oldShared, false, default);
            var snapshot = pool.Snapshot("v", "snap");
            await v.WriteAsync(10L * Bs, Bytes(Bs, 2), false, default); // mapped, unshared: written in place below
            oldShared.CopyTo(expected, 20 * Bs);

            // Whole new blocks on both sides of one written in place (its bytes sit between theirs in
            // the data), a 4 KiB piece of a block shared with the snapshot, then two adjacent blocks.
            VolumeRange[] ranges = [new(3L * Bs, Bs), new(10L * Bs, Bs), new(7L * Bs, Bs), new(20L * Bs + 8192, 4096), new(25L * Bs, 2 * Bs)];
            int total = (int)VolumeRange.TotalLength(ranges);
            var buffers = new AlignedBufferPool(total, keep: 1);
            using (var data = buffers.Rent())
            {
                Bytes(total, 3).CopyTo(data.Span);
                await v.WriteStreamingAsync(ranges, data.Memory, default);
                int at = 0;
                foreach (var r in ranges)
                {
                    data.Span.Slice(at, r.Length).CopyTo(expected.AsSpan((int)r.Offset));
                    at += r.Length;
                }
            }
            Assert.Equal(expected, await Read(v, 0, expected.Length));
            var snapshotBytes = new byte[32 * Bs];
            oldShared.CopyTo(snapshotBytes, 20 * Bs);
            Assert.Equal(snapshotBytes, await Read(snapshot, 0, snapshotBytes.Length));
        }

        string metadata = Path.Combine(path, ThinPool.MetadataFile);
        Oracle.AssertCheckPasses(metadata, "after a gathered write");
        // The new blocks were allocated in range order, one after the other (block 10 kept its own).
        var map = DataBlocks(Oracle.Dump(metadata), device: 0);
        ulong first = map[3];
        Assert.Equal([first, first + 1, first + 2, first + 3, first + 4], new[] { map[3], map[7], map[20], map[25], map[26] });
        await using var reopened = ThinPool.Open(path);
        Assert.Equal(expected, await Read(reopened.OpenVolume("v"), 0, expected.Length));
    }

    [Fact]
    public async Task AGatheredReadReturnsWhatReadingEachRangeAloneReturns()
    {
        using var dir = Tool.TempDir();
        await using var pool = ThinPool.Create(dir.File("pool"), 64L * Bs, new PoolSettings());
        var v = pool.CreateVolume("v", 16L * Bs);
        await v.WriteAsync(0, Bytes(6 * Bs, 4), false, default);      // data blocks 0..5 for virtual 0..5
        await v.WriteAsync(9L * Bs, Bytes(3 * Bs, 5), false, default); // 9..11, after them
        var snapshot = pool.Snapshot("v", "snap");

        // Backwards (consecutive in the data file, not in the buffer), across a hole, partial pieces,
        // one block twice, and ranges that are side by side in both.
        VolumeRange[] ranges = [new(5L * Bs, Bs), new(4L * Bs, Bs), new(6L * Bs, 3 * Bs), new(9L * Bs + 4096, 8192),
            new(Bs, Bs), new(Bs, Bs), new(2L * Bs, 2 * Bs), new(10L * Bs, 2 * Bs)];
        int total = (int)VolumeRange.TotalLength(ranges);
        var expected = new byte[total];
        int at = 0;
        foreach (var r in ranges)
        {
            (await Read(snapshot, r.Offset, r.Length)).CopyTo(expected, at);
            at += r.Length;
        }

        var buffers = new AlignedBufferPool(total, keep: 1);
        using (var aligned = buffers.Rent())
        {
            await snapshot.ReadStreamingAsync(ranges, aligned.Memory, default);
            Assert.True(expected.AsSpan().SequenceEqual(aligned.Span), "gathered read into aligned memory (direct I/O)");
        }
        var unaligned = new byte[total + 1];
        await snapshot.ReadStreamingAsync(ranges, unaligned.AsMemory(1), default);
        Assert.True(expected.AsSpan().SequenceEqual(unaligned.AsSpan(1)), "gathered read into unaligned memory (page cache)");
    }

    [Fact]
    public async Task ARangeListThatDoesNotFitTheBufferOrTheVolumeIsRefusedAndChangesNothing()
    {
        using var dir = Tool.TempDir();
        await using var pool = ThinPool.Create(dir.File("pool"), 64L * Bs, new PoolSettings());
        var v = pool.CreateVolume("v", 16L * Bs);
        var before = Bytes(16 * Bs, 6);
        await v.WriteAsync(0, before, false, default);

        var short_ = await Assert.ThrowsAsync<VolumeException>(() =>
            v.WriteStreamingAsync([new(0, Bs), new(2L * Bs, Bs)], new byte[Bs], default).AsTask());
        Assert.Equal(VolumeError.InvalidArgument, short_.Error);
        Assert.Contains("cover 131072 bytes, but the buffer holds 65536", short_.Message);
        var outside = await Assert.ThrowsAsync<VolumeException>(() =>
            v.WriteStreamingAsync([new(0, Bs), new(16L * Bs, Bs)], new byte[2 * Bs], default).AsTask());
        Assert.Equal(VolumeError.InvalidArgument, outside.Error);
        Assert.Contains("outside volume v", outside.Message);
        var read = await Assert.ThrowsAsync<VolumeException>(() =>
            v.ReadStreamingAsync([new(15L * Bs, 2 * Bs)], new byte[2 * Bs], default).AsTask());
        Assert.Equal(VolumeError.InvalidArgument, read.Error);

        Assert.Equal(before, await Read(v, 0, before.Length));
    }

    /// <summary>Virtual block → data block of one device, from thin_dump's XML.</summary>
    private static Dictionary<ulong, ulong> DataBlocks(string xml, int device)
    {
        var map = new Dictionary<ulong, ulong>();
        var dev = Regex.Match(xml, $"<device dev_id=\"{device}\".*?</device>", RegexOptions.Singleline).Value;
        foreach (Match m in SingleMapping().Matches(dev))
            map[ulong.Parse(m.Groups[1].Value)] = ulong.Parse(m.Groups[2].Value);
        foreach (Match m in RangeMapping().Matches(dev))
        {
            ulong origin = ulong.Parse(m.Groups[1].Value), data = ulong.Parse(m.Groups[2].Value), length = ulong.Parse(m.Groups[3].Value);
            for (ulong k = 0; k < length; k++)
                map[origin + k] = data + k;
        }
        return map;
    }

    [GeneratedRegex("<single_mapping origin_block=\"(\\d+)\" data_block=\"(\\d+)\"")]
    private static partial Regex SingleMapping();

    [GeneratedRegex("<range_mapping origin_begin=\"(\\d+)\" data_begin=\"(\\d+)\" length=\"(\\d+)\"")]
    private static partial Regex RangeMapping();
}
