using BackupAppliance.EndToEnd.Tests.Support;

namespace BackupAppliance.EndToEnd.Tests;

/// <summary>
/// The product's main job, with real parts only: a full backup and several incrementals of a
/// volume written through NBD, each restored from the receiver and compared with the volume as it
/// was (sha256 of the whole image).
/// </summary>
public sealed class BackupEndToEndTests
{
    [Fact]
    public async Task FullThenIncrementalsRestoreToTheSourceImage()
    {
        const long size = 64L << 20;
        await using var rig = await BackupRig.StartAsync(size);
        var rng = new Random(5);
        var expected = new List<(string Point, string Sha)>();
        long previousChanged = long.MaxValue;
        for (int round = 0; round < 4; round++)
        {
            if (round == 0)
                rig.Write(rng, writes: 40, maxLength: 4 << 20);
            else
                rig.Write(rng, writes: 12, maxLength: 256 << 10, zeroWrites: 2, discards: 2);
            string sha = rig.Snapshot($"source-{round}.raw");
            var result = rig.BackupNowOk();
            string point = result["point"]!.GetValue<string>();
            long changed = result["changed_bytes"]!.GetValue<long>();
            long wire = result["wire_bytes"]!.GetValue<long>();
            long data = result["data_bytes"]!.GetValue<long>();
            Assert.True(wire <= data + (1 << 20), $"round {round}: {wire} bytes on the wire for {data} bytes of data");
            if (round > 0)
                Assert.True(changed < previousChanged && changed < size / 4, $"round {round}: increment of {changed} bytes is not small (full was {previousChanged})");
            previousChanged = round == 0 ? changed : previousChanged;
            expected.Add((point, sha));
            Assert.Equal(sha, rig.Restore(point, $"restored-{round}.raw"));
        }

        // Every point is still there, whole, in order, each an increment of the one before.
        var points = rig.Points();
        Assert.Equal(expected.Select(e => e.Point), points.Select(p => p!["point"]!.GetValue<string>()));
        Assert.Null(points[0]!["base"]?.GetValue<string>());
        for (int i = 1; i < points.Count; i++)
            Assert.Equal(expected[i - 1].Point, points[i]!["base"]!.GetValue<string>());
        for (int i = 0; i < expected.Count; i++)
            Assert.Equal(expected[i].Sha, rig.Restore(expected[i].Point, $"again-{i}.raw"));
        Assert.Equal(expected[^1].Sha, rig.Restore("latest", "latest.raw"));
        rig.StopDaemonsCleanly();
    }

    /// <summary>
    /// An agent whose base table is of the format before protocol version 2 (32-byte SHA-256
    /// entries) cannot rebuild it (the base image is gone from the host): its next backup is a full
    /// one, says why in the log, and restores to the source; the incremental after it is small again.
    /// </summary>
    [Fact]
    public async Task AnOlderFormatBaseTableMakesTheNextBackupFull()
    {
        const long size = 16L << 20;
        await using var rig = await BackupRig.StartAsync(size);
        var rng = new Random(8);
        rig.Write(rng, writes: 20, maxLength: 1 << 20);
        string first = rig.BackupNowOk()["point"]!.GetValue<string>();

        rig.StopDaemonsCleanly();
        string table = Assert.Single(Directory.GetFiles(rig.Folder, $"{BackupRig.Volume}.{first}.hashes", SearchOption.AllDirectories));
        long blocks = new FileInfo(table).Length / 16;
        var old = new byte[blocks * 32];
        rng.NextBytes(old);
        File.WriteAllBytes(table, old);
        rig.StartReceiver();
        rig.StartAgent();

        rig.Write(rng, writes: 2, maxLength: 64 << 10);
        string sha = rig.Snapshot("source-1.raw");
        var full = rig.BackupNowOk();
        string second = full["point"]!.GetValue<string>();
        Assert.True(full["changed_bytes"]!.GetValue<long>() == size, $"changed {full["changed_bytes"]} of {size} bytes: not a full backup\n{rig.Logs}");
        Assert.Contains("block hash table", rig.Logs);
        Assert.Contains("older format; a full backup follows", rig.Logs);
        var points = rig.Points();
        Assert.Equal([first, second], points.Select(p => p!["point"]!.GetValue<string>()));
        Assert.Null(points[1]!["base"]?.GetValue<string>());
        Assert.Equal(sha, rig.Restore(second, "restored-1.raw"));

        rig.Write(rng, writes: 2, maxLength: 64 << 10);
        sha = rig.Snapshot("source-2.raw");
        var next = rig.BackupNowOk();
        Assert.True(next["changed_bytes"]!.GetValue<long>() < size / 4, $"changed {next["changed_bytes"]} bytes after the full backup");
        Assert.Equal(sha, rig.Restore(next["point"]!.GetValue<string>(), "restored-2.raw"));
        rig.StopDaemonsCleanly();
    }

    /// <summary>
    /// A backup taken while a writer is busy holds a prefix of its writes: the writer fills 256
    /// fresh 64 KiB blocks in order (block i with byte i % 251 + 1, a flush and a 10 ms pause after each), and the
    /// restored point must show blocks 0..k-1 written and k..255 still zero for some k, never a gap
    /// or a torn block. The next backup, after the writer finished, holds all 256.
    /// </summary>
    [Fact]
    public async Task BackupDuringWritesHoldsAPrefixOfThem()
    {
        const long size = 32L << 20;
        const int blocks = 256;
        const long regionStart = size - blocks * 65536L;
        await using var rig = await BackupRig.StartAsync(size);
        rig.Write(new Random(3), writes: 10, maxLength: 1 << 20);
        // The region the writer fills starts out zero in every point so far.
        rig.Expect(BackupAppliance.TestSupport.Tool.Run("qemu-io", "-f", "raw", rig.NbdUrl, "-c", $"write -z {regionStart} {blocks * 65536L}"), "zeroing the region");
        rig.BackupNowOk();
        var args = new List<string> { "-f", "raw", rig.NbdUrl };
        for (int i = 0; i < blocks; i++)
        {
            args.Add("-c");
            args.Add($"write -P {i % 251 + 1} {regionStart + i * 65536L} 65536");
            args.Add("-c");
            args.Add("flush");
            args.Add("-c");
            args.Add("sleep 10"); // ms: the writer spans the backup instead of finishing before it starts
        }
        var writer = Task.Run(() => BackupAppliance.TestSupport.Tool.Run("qemu-io", [.. args]));
        // Back up once the writer is under way (its first block is there).
        while (!writer.IsCompleted && BackupAppliance.TestSupport.Tool.Run("qemu-io", "-f", "raw", rig.NbdUrl, "-c", $"read -P 1 {regionStart} 65536").Stdout.Contains("failed", StringComparison.OrdinalIgnoreCase))
            await Task.Delay(5);
        var during = rig.BackupNowOk();
        var written = await writer;
        rig.Expect(written, "the writer");
        string duringImage = Path.Combine(rig.Folder, "during.raw");
        rig.Restore(during["point"]!.GetValue<string>(), "during.raw");
        int prefix = PrefixOf(duringImage, regionStart, blocks);
        rig.BackupNowOk();
        string afterImage = Path.Combine(rig.Folder, "after.raw");
        rig.Restore("latest", "after.raw");
        Assert.Equal(blocks, PrefixOf(afterImage, regionStart, blocks));
        // Outside the region both points equal each other (the writer touched nothing else).
        Assert.Equal(Hash(duringImage, 0, regionStart), Hash(afterImage, 0, regionStart));
        Console.WriteLine($"backup during writes held {prefix} of {blocks} writes");
    }

    /// <summary>k such that blocks 0..k-1 hold their pattern and k.. are zero; fails on anything else.</summary>
    private static int PrefixOf(string image, long start, int blocks)
    {
        using var f = File.OpenHandle(image);
        var buf = new byte[65536];
        int prefix = -1;
        for (int i = 0; i < blocks; i++)
        {
            RandomAccess.Read(f, buf, start + i * 65536L);
            byte want = (byte)(i % 251 + 1);
            bool written = Array.TrueForAll(buf, b => b == want);
            bool zero = !written && Array.TrueForAll(buf, b => b == 0);
            Assert.True(written || zero, $"block {i} of the region is torn (neither all {want} nor all zero)");
            if (zero && prefix < 0)
                prefix = i;
            Assert.False(written && prefix >= 0, $"block {i} is written but block {prefix} before it is not: not a prefix");
        }
        return prefix < 0 ? blocks : prefix;
    }

    private static string Hash(string image, long offset, long length)
    {
        using var f = File.OpenRead(image);
        var buf = new byte[length];
        f.ReadExactly(buf);
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(buf));
    }
}
