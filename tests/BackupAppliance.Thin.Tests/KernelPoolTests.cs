using System.Buffers.Binary;
using System.Text.RegularExpressions;
using BackupAppliance.Core;
using BackupAppliance.PersistentData;
using BackupAppliance.Thin.Delta;
using BackupAppliance.Thin.Kernel;
using BackupAppliance.Thin.Tests.Support;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// <see cref="KernelPoolChanges"/>: the reserve → read the held root → release sequence against a
/// stand-in dmsetup over a real metadata file (<see cref="FakeDmsetup"/>, whose reserve runs the
/// shared mksnap.py). What it reads must equal thin_delta -m / thin_dump -m (the real tools) on the
/// file as it was while the snapshot was held, and what <see cref="ThinReader"/> reads there directly.
/// </summary>
public class KernelPoolTests
{
    [Fact]
    public async Task ChangesThroughTheSnapshotEqualThinDeltaAndThinReader()
    {
        using var fake = new FakeDmsetup();
        byte[] original = File.ReadAllBytes(fake.Metadata);
        string held = fake.Metadata + ".held";
        fake.OnReserve("cp \"$META\" \"$META.held\"");
        var changes = new KernelPoolChanges(new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable), fake.Metadata);

        foreach (var (left, right) in new[] { (0UL, 1UL), (1UL, 0UL) })
        {
            var read = await changes.ChangesAsync(left, right);
            var theirs = ChangeLines(ThinDelta(held, left, right));
            Assert.Equal(4, theirs.Count); // two `different`, one `left_only`, one `right_only` (FORMATS.md §10.2)
            Assert.Equal(theirs, Render(read.Value));
            using (var r = ThinReader.Open(held, metadataSnapshot: true))
                Assert.Equal(DeltaCollector.Changes(r, r.MappingRoot(left)!.Value, r.MappingRoot(right)!.Value), read.Value);
            Assert.Equal((8UL, false, false, 3UL), (read.HeldRoot, read.ReusedSnapshot, read.NeedsCheck, read.Status.TransactionId));
        }
        Assert.Equal(new[] { FakeDmsetup.Status, FakeDmsetup.Reserve, FakeDmsetup.Status, FakeDmsetup.Release }, fake.CallLog.Take(4));
        Assert.Equal(8, fake.CallLog.Count);
        Assert.Equal(original, File.ReadAllBytes(fake.Metadata)); // released: the fake put the pre-reserve file back

        var mapping = await changes.MappingAsync(1);
        Assert.Equal(DumpedBlocks(Tool.Run("thin_dump", "-m", held).Stdout, 1), Expand(mapping.Value));
        Assert.Equal(101, Expand(mapping.Value).Count);
    }

    [Fact]
    public async Task TheSnapshotKeepsTheOldMappingWhileTheLiveTreeChanges()
    {
        using var fake = new FakeDmsetup();
        string held = fake.Metadata + ".held";
        // While the snapshot is held the pool rewrites dev 0 vblock 150 (data 300 → 301) with kernel-style shadowing.
        fake.OnReserve($"python3 '{Path.Combine(Tool.OracleSamples, "cowtest.py")}' \"$META\" > /dev/null\ncp \"$META\" \"$META.held\"");
        var changes = new KernelPoolChanges(new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable), fake.Metadata);

        var mapping = await changes.MappingAsync(0);
        var snapshotBlocks = DumpedBlocks(Tool.Run("thin_dump", "-m", held).Stdout, 0);
        Assert.Equal(snapshotBlocks, Expand(mapping.Value));
        Assert.Equal(300UL, Expand(mapping.Value)[150]);
        Assert.Equal(301UL, DumpedBlocks(Tool.Run("thin_dump", held).Stdout, 0)[150]); // the live tree did change

        var read = await changes.ChangesAsync(0, 1);
        Assert.Equal(ChangeLines(ThinDelta(held, 0, 1)), Render(read.Value));
        var at150 = Assert.Single(read.Value, r => r.Begin == 150);
        Assert.Equal((DeltaKind.LeftOnly, 300UL), (at150.Kind, at150.LeftDataBegin));
        Assert.Contains("<range begin=\"150\" data_begin=\"300\" length=\"1\"/>", Tool.Run("thin_delta", "-m", "--verbose", "--snap1", "0", "--snap2", "1", held).Stdout);
        using (var live = ThinReader.Open(held))
            Assert.Equal(301UL, DeltaCollector.Changes(live, live.MappingRoot(0)!.Value, live.MappingRoot(1)!.Value).Single(r => r.Begin == 150).LeftDataBegin);
        Assert.Equal(0, Tool.Run("thin_check", held).ExitCode);
    }

    [Fact]
    public async Task ASnapshotHeldBySomeoneElseIsRefusedUnlessReused()
    {
        using var fake = new FakeDmsetup();
        var r = Tool.Run("python3", Path.Combine(Tool.OracleSamples, "mksnap.py"), fake.Metadata); // another reader reserved
        Assert.True(r.ExitCode == 0, r.Stderr);
        byte[] heldByOther = File.ReadAllBytes(fake.Metadata);
        var pool = new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable);

        var e = await Assert.ThrowsAsync<KernelPoolException>(() => new KernelPoolChanges(pool, fake.Metadata).ChangesAsync(0, 1));
        Assert.Equal(KernelPoolError.SnapshotAlreadyHeld, e.Error);
        Assert.Contains("already holds a metadata snapshot (root 8)", e.Message);
        Assert.Equal(new[] { FakeDmsetup.Status }, fake.CallLog);
        Assert.Equal(heldByOther, File.ReadAllBytes(fake.Metadata));

        var reused = await new KernelPoolChanges(pool, fake.Metadata, reuseHeldSnapshot: true).ChangesAsync(0, 1);
        Assert.True(reused.ReusedSnapshot);
        Assert.Equal(ChangeLines(ThinDelta(fake.Metadata, 0, 1)), Render(reused.Value));
        Assert.Equal(new[] { FakeDmsetup.Status, FakeDmsetup.Status }, fake.CallLog); // neither reserved nor released
        Assert.Equal(heldByOther, File.ReadAllBytes(fake.Metadata));
    }

    public static TheoryData<string> Failures() => new() { "corrupt mapping root", "no metadata device", "reader throws", "cancelled", "held root mismatch" };

    [Theory]
    [MemberData(nameof(Failures))]
    public async Task TheSnapshotIsReleasedWhenTheReadFails(string failure)
    {
        using var fake = new FakeDmsetup();
        string metadataDevice = fake.Metadata;
        Func<ThinReader, int> read = r => DeltaCollector.Changes(r, r.MappingRoot(0)!.Value, r.MappingRoot(1)!.Value).Count;
        using var cts = new CancellationTokenSource();
        switch (failure)
        {
            case "corrupt mapping root":
                RawPoolEdit.FlipByte(fake.Metadata, RawPoolEdit.Superblock(fake.Metadata).DataMappingRoot, 200);
                break;
            case "no metadata device":
                metadataDevice = "/nonexistent/mapper/vg-pool_tmeta";
                break;
            case "reader throws":
                read = _ => throw new InvalidOperationException("the walk failed");
                break;
            case "cancelled":
                read = _ => { cts.Cancel(); cts.Token.ThrowIfCancellationRequested(); return 0; };
                break;
            case "held root mismatch":
                fake.OnReserve($"echo '0 131072 thin-pool 3 12/4096 101/1024 9 rw discard_passdown queue_if_no_space - 1024' > '{fake.StatusOverride}'");
                break;
        }
        byte[] before = File.ReadAllBytes(fake.Metadata);
        var changes = new KernelPoolChanges(new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable), metadataDevice);

        var e = await Assert.ThrowsAnyAsync<Exception>(() => changes.ReadAsync(read, cts.Token));
        switch (failure)
        {
            case "corrupt mapping root":
                Assert.IsType<CorruptMetadataException>(e);
                break;
            case "no metadata device":
                Assert.Equal(KernelPoolError.MetadataDeviceMissing, Assert.IsType<KernelPoolException>(e).Error);
                Assert.Contains("/nonexistent/mapper/vg-pool_tmeta", e.Message);
                break;
            case "reader throws":
                Assert.Equal("the walk failed", Assert.IsType<InvalidOperationException>(e).Message);
                break;
            case "cancelled":
                Assert.IsAssignableFrom<OperationCanceledException>(e);
                break;
            case "held root mismatch":
                Assert.Equal(KernelPoolError.HeldRootMismatch, Assert.IsType<KernelPoolException>(e).Error);
                Assert.Contains("reports held metadata root 9, but the superblock of", e.Message);
                Assert.Contains("records 8", e.Message);
                break;
        }
        Assert.Equal(new[] { FakeDmsetup.Status, FakeDmsetup.Reserve, FakeDmsetup.Status, FakeDmsetup.Release }, fake.CallLog);
        Assert.Equal(before, File.ReadAllBytes(fake.Metadata));
    }

    [Fact]
    public async Task AnUnknownThinDeviceIsATypedErrorAndReleases()
    {
        using var fake = new FakeDmsetup();
        var changes = new KernelPoolChanges(new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable), fake.Metadata);
        var e = await Assert.ThrowsAsync<KernelPoolException>(() => changes.ChangesAsync(0, 5));
        Assert.Equal(KernelPoolError.ThinDeviceMissing, e.Error);
        Assert.Contains($"thin device 5 is not in the metadata snapshot of thin pool {FakeDmsetup.Pool}", e.Message);
        Assert.Equal(FakeDmsetup.Release, fake.CallLog[^1]);
    }

    [Fact]
    public async Task AFailedReleaseIsReportedNotHidden()
    {
        using var fake = new FakeDmsetup();
        // The pool goes away while the snapshot is held: the release cannot reach it.
        fake.OnReserve($"touch '{fake.NoDriver}'");
        var changes = new KernelPoolChanges(new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable), fake.Metadata);
        var e = await Assert.ThrowsAsync<KernelPoolException>(() => changes.ChangesAsync(0, 1));
        // The status after the reserve already fails (DriverMissing); the release fails the same way.
        Assert.Equal(KernelPoolError.ReleaseFailed, e.Error);
        Assert.Contains($"release it with `dmsetup message {FakeDmsetup.Pool} 0 release_metadata_snap`", e.Message);
        var both = Assert.IsType<AggregateException>(e.InnerException);
        Assert.All(both.InnerExceptions, x => Assert.Equal(KernelPoolError.DriverMissing, Assert.IsType<KernelPoolException>(x).Error));
        Assert.Equal(8UL, RawPoolEdit.Superblock(fake.Metadata).HeldRoot); // still held, as the message says
    }

    [Fact]
    public async Task NeedsCheckIsReportedAndAReadOnlyPoolIsNotAskedToReserve()
    {
        using var fake = new FakeDmsetup();
        var sb = RawPoolEdit.Superblock(fake.Metadata);
        sb.NeedsCheck = true;
        RawPoolEdit.WriteSuperblock(fake.Metadata, sb);
        fake.OnReserve("cp \"$META\" \"$META.held\"");
        var pool = new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable);
        var read = await new KernelPoolChanges(pool, fake.Metadata).ChangesAsync(0, 1);
        Assert.True(read.NeedsCheck);
        Assert.Equal(ChangeLines(ThinDelta(fake.Metadata + ".held", 0, 1)), Render(read.Value));

        File.WriteAllText(fake.StatusOverride, "0 131072 thin-pool 3 11/4096 101/1024 - ro discard_passdown queue_if_no_space needs_check 1024\n");
        int calls = fake.CallLog.Count;
        var e = await Assert.ThrowsAsync<KernelPoolException>(() => new KernelPoolChanges(pool, fake.Metadata).ChangesAsync(0, 1));
        Assert.Equal(KernelPoolError.PoolReadOnly, e.Error);
        Assert.Contains("is read-only and needs_check is set", e.Message);
        Assert.Equal(new[] { FakeDmsetup.Status }, fake.CallLog.Skip(calls));
    }

    /// <summary>
    /// The metadata device is a block device the pool keeps open and writes below the page cache. A
    /// loop device over the file plays it: a holder keeps it open with every block cached, the fake
    /// pool writes the file underneath. A plain read then sees the stale superblock; the sequence
    /// (which drops the device's cache first) reads what thin_delta -m reads from the file.
    /// </summary>
    [Fact]
    public async Task ReadsABlockDeviceWhosePageCacheIsStale()
    {
        using var fake = new FakeDmsetup();
        string held = fake.Metadata + ".held";
        fake.OnReserve("cp \"$META\" \"$META.held\"");
        var attach = Tool.Run("losetup", "--find", "--show", fake.Metadata);
        Assert.True(attach.ExitCode == 0, $"losetup: {attach.Stderr}");
        string loop = attach.Stdout.Trim();
        try
        {
            using (var bm = new BlockManager(loop, writable: false))
                Assert.Equal(4096UL, bm.NrBlocks); // measured, although a block device's fstat size is 0

            using var holder = new FileStream(loop, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            holder.CopyTo(Stream.Null);
            var pool = new DmsetupThinPool(FakeDmsetup.Pool, fake.Executable);
            await pool.ReserveMetadataSnapshotAsync();
            var block0 = new byte[4096];
            RandomAccess.Read(holder.SafeFileHandle, block0, 0);
            Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(block0.AsSpan(56))); // stale: the file says 8
            Assert.Equal(8UL, RawPoolEdit.Superblock(fake.Metadata).HeldRoot);
            await pool.ReleaseMetadataSnapshotAsync();

            var read = await new KernelPoolChanges(pool, loop).ChangesAsync(0, 1);
            Assert.Equal(8UL, read.HeldRoot);
            Assert.Equal(ChangeLines(ThinDelta(held, 0, 1)), Render(read.Value));
        }
        finally
        {
            Tool.Run("losetup", "--detach", loop);
        }
    }

    private static string ThinDelta(string file, ulong left, ulong right)
    {
        var r = Tool.Run("thin_delta", "-m", "--snap1", left.ToString(), "--snap2", right.ToString(), file);
        Assert.True(r.ExitCode == 0, $"thin_delta -m: {r.Stderr}");
        return r.Stdout;
    }

    /// <summary>thin_delta's change elements (everything but <c>same</c>), one per line.</summary>
    private static List<string> ChangeLines(string delta) =>
        delta.Split('\n').Select(l => l.Trim())
            .Where(l => l.StartsWith("<different ", StringComparison.Ordinal) || l.StartsWith("<left_only ", StringComparison.Ordinal) || l.StartsWith("<right_only ", StringComparison.Ordinal))
            .ToList();

    /// <summary>Our ranges printed the way thin_delta prints them.</summary>
    private static List<string> Render(IEnumerable<DeltaRange> ranges)
    {
        var w = new StringWriter();
        var e = new SimpleDeltaEmitter(w, skipSame: true);
        foreach (var r in ranges)
            e.Range(r);
        e.Flush();
        return ChangeLines(w.ToString());
    }

    private static SortedDictionary<ulong, ulong> Expand(IEnumerable<MappingRun> runs)
    {
        var blocks = new SortedDictionary<ulong, ulong>();
        foreach (var run in runs)
            for (ulong i = 0; i < run.Length; i++)
                blocks.Add(run.VBegin + i, run.DBegin + i);
        return blocks;
    }

    /// <summary>Virtual → data block of one device in thin_dump's XML.</summary>
    private static SortedDictionary<ulong, ulong> DumpedBlocks(string dump, ulong dev)
    {
        var blocks = new SortedDictionary<ulong, ulong>();
        bool inDevice = false;
        foreach (var line in dump.Split('\n'))
        {
            if (line.Contains("<device ", StringComparison.Ordinal))
                inDevice = Attr(line, "dev_id") == dev;
            else if (inDevice && line.Contains("<single_mapping ", StringComparison.Ordinal))
                blocks.Add(Attr(line, "origin_block"), Attr(line, "data_block"));
            else if (inDevice && line.Contains("<range_mapping ", StringComparison.Ordinal))
                for (ulong i = 0; i < Attr(line, "length"); i++)
                    blocks.Add(Attr(line, "origin_begin") + i, Attr(line, "data_begin") + i);
        }
        return blocks;
    }

    private static ulong Attr(string line, string name) => ulong.Parse(Regex.Match(line, $"\\b{name}=\"(\\d+)\"").Groups[1].Value);
}
