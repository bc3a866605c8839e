using System.Diagnostics;
using BackupAppliance.Core;
using BackupAppliance.Era.Tests.Support;
using Xunit.Abstractions;

namespace BackupAppliance.Era.Tests;

public sealed class EraMetadataTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ITestOutputHelper _out;

    public EraMetadataTests(ITestOutputHelper output) => _out = output;

    public void Dispose() => _dir.Dispose();

    private static List<(uint, uint)> Runs(EraMetadata md, uint era) => EraModel.Runs(md, era);

    [Fact]
    public void Create_StartsEraOneWithEmptyWriteset_AndTheRealToolsAcceptIt()
    {
        string path = _dir.File("era.bin");
        using (var md = EraMetadata.Create(path, 128, 1000))
        {
            Assert.Equal(1u, md.CurrentEra);
            Assert.Equal(1000u, md.NrBlocks);
            Assert.Equal(128u, md.DataBlockSizeSectors);
            Assert.Empty(md.ArchivedEras);
            Assert.False(md.IsMarked(0));
            Assert.False(md.IsMarked(999));
            Assert.Empty(Runs(md, 1));
            Assert.Equal(0, new FileInfo(path).Length % 4096);
        }
        EraOracle.AssertCheckPasses(path, "fresh file, cleanly closed");
        EraRefAudit.Verify(path, "fresh file");
        Assert.Empty(EraOracle.Invalidate(path, 1));
        Assert.Equal([(0u, 1000u)], EraOracle.Invalidate(path, 0));
    }

    [Fact]
    public void Mark_IsVisibleInCoreOnlyAfterCommit_AndSurvivesReopen()
    {
        string path = _dir.File("era.bin");
        using (var md = EraMetadata.Create(path, 128, 300))
        {
            md.Mark(5, 10);
            md.Mark(64, 130);
            Assert.False(md.IsMarked(5));
            Assert.False(md.AreAllMarked(64, 130));
            Assert.Empty(Runs(md, 1));
            md.Commit();
            Assert.True(md.IsMarked(5));
            Assert.True(md.IsMarked(9));
            Assert.False(md.IsMarked(10));
            Assert.True(md.AreAllMarked(64, 130));
            Assert.True(md.AreAllMarked(5, 5));
            Assert.False(md.AreAllMarked(9, 11));
            Assert.Equal([(5u, 10u), (64u, 130u)], Runs(md, 1));
        }
        using (var md = EraMetadata.Open(path, EraOpenMode.Activate))
        {
            Assert.Equal(2u, md.CurrentEra);
            Assert.Equal([1u], md.ArchivedEras);
            Assert.False(md.IsMarked(5)); // a new era has started
            Assert.Equal([(5u, 10u), (64u, 130u)], Runs(md, 1));
            Assert.Empty(Runs(md, 2));
        }
        EraOracle.AssertCheckPasses(path, "after reopen");
        EraRefAudit.Verify(path, "after reopen");
        Assert.Equal([(5u, 10u), (64u, 130u)], EraOracle.Invalidate(path, 1));
        Assert.Empty(EraOracle.Invalidate(path, 3));
    }

    [Fact]
    public void Crash_CommittedWritesetIsArchivedUnderTheOldEra_UncommittedMarksAreNot()
    {
        string path = _dir.File("era.bin");
        string crashed = _dir.File("crashed.bin");
        var md = EraMetadata.Create(path, 128, 5000);
        md.Checkpoint();
        md.Checkpoint(); // era 3
        md.Mark(100, 200);
        md.Mark(4990, 5000);
        md.Commit();
        md.Mark(300, 310); // never committed
        File.Copy(path, crashed); // the machine dies here: no Dispose, no archive
        md.Dispose();

        using (var ro = EraMetadata.Open(crashed, EraOpenMode.ReadOnly))
        {
            Assert.Equal(3u, ro.CurrentEra);
            Assert.True(ro.IsMarked(150)); // the committed current writeset, read back
            Assert.False(ro.IsMarked(305));
        }
        using (var rec = EraMetadata.Open(crashed, EraOpenMode.Activate))
        {
            Assert.Equal(4u, rec.CurrentEra);
            Assert.Equal([3u], rec.ArchivedEras.Where(e => e == 3).ToList());
            Assert.Equal([(100u, 200u), (4990u, 5000u)], Runs(rec, 3));
            Assert.Empty(Runs(rec, 4));
            Assert.False(rec.IsMarked(150));
        }
        EraOracle.AssertCheckPasses(crashed, "recovered crash copy");
        EraRefAudit.Verify(crashed, "recovered crash copy");
        Assert.Equal([(100u, 200u), (4990u, 5000u)], EraOracle.Invalidate(crashed, 3));
    }

    [Fact]
    public void ReadOnly_WritesNothing()
    {
        string path = _dir.File("era.bin");
        using (var md = EraMetadata.Create(path, 128, 700))
        {
            md.Mark(1, 2);
            md.Commit();
        }
        byte[] before = File.ReadAllBytes(path);
        using (var ro = EraMetadata.Open(path, EraOpenMode.ReadOnly))
        {
            Assert.Throws<InvalidOperationException>(() => ro.Mark(3, 4));
            Assert.Throws<InvalidOperationException>(() => ro.Commit());
            Assert.Throws<InvalidOperationException>(() => ro.Checkpoint());
            Assert.Throws<InvalidOperationException>(() => ro.DigestStep(10));
            Assert.Equal([(1u, 2u)], Runs(ro, 1));
        }
        Assert.Equal(before, File.ReadAllBytes(path));
    }

    [Fact]
    public void Checkpoints_ArchiveEachEra_PendingMarksBelongToTheClosedEra()
    {
        string path = _dir.File("era.bin");
        using var md = EraMetadata.Create(path, 64, 2000);
        md.Mark(0, 1);
        md.Commit();
        md.Mark(10, 20); // pending at the checkpoint
        Assert.Equal(2u, md.Checkpoint());
        Assert.False(md.IsMarked(0));
        Assert.False(md.IsMarked(10));
        md.Mark(15, 25);
        Assert.Equal(3u, md.Checkpoint());
        Assert.Equal(4u, md.Checkpoint()); // an empty era is archived too
        md.Mark(1999, 2000);
        md.Commit();
        Assert.Equal([1u, 2u, 3u], md.ArchivedEras);
        Assert.Equal([(0u, 1u), (10u, 25u), (1999u, 2000u)], Runs(md, 1));
        Assert.Equal([(15u, 25u), (1999u, 2000u)], Runs(md, 2));
        Assert.Equal([(1999u, 2000u)], Runs(md, 3));
        Assert.Equal([(1999u, 2000u)], Runs(md, 4));
        Assert.Empty(Runs(md, 5));
        Assert.Equal([(0u, 2000u)], Runs(md, 0));
    }

    [Fact]
    public void Digest_NewestEraWins_AndFreesTheBitsets()
    {
        string path = _dir.File("era.bin");
        using (var md = EraMetadata.Create(path, 128, 3000))
        {
            md.Mark(0, 100);
            md.Checkpoint();                 // era 1: 0..99
            md.Mark(50, 150);
            md.Checkpoint();                 // era 2: 50..149
            md.Mark(120, 121);
            md.Mark(2990, 3000);
            md.Checkpoint();                 // era 3: 120, 2990..2999
            Assert.Equal([1u, 2u, 3u], md.ArchivedEras);
            var before = Enumerable.Range(0, 6).Select(e => Runs(md, (uint)e)).ToList();

            Assert.False(md.DigestStep(1)); // nothing below era 1
            int steps = 0;
            while (md.DigestStep(3, maxBits: 64))
                steps++;
            Assert.True(steps > 2, $"{steps} steps: the budget must bound each step");
            Assert.Equal([3u], md.ArchivedEras);
            for (uint e = 0; e < 6; e++)
                Assert.Equal(before[(int)e], Runs(md, e));
            md.Commit();
            while (md.DigestStep(uint.MaxValue)) { }
            Assert.Empty(md.ArchivedEras);
            for (uint e = 0; e < 6; e++)
                Assert.Equal(before[(int)e], Runs(md, e));
        }
        EraOracle.AssertCheckPasses(path, "digested");
        EraRefAudit.Verify(path, "digested");
        // The era array itself, through the real era_dump: the newest era won.
        var dump = Tool.Run("era_dump", path);
        Assert.Equal(0, dump.ExitCode);
        Assert.Contains("<era block=\"0\" era=\"1\"/>", dump.Stdout);
        Assert.Contains("<era block=\"60\" era=\"2\"/>", dump.Stdout);
        Assert.Contains("<era block=\"120\" era=\"3\"/>", dump.Stdout);
        Assert.Contains("<era block=\"121\" era=\"2\"/>", dump.Stdout);
        Assert.Contains("<era block=\"150\" era=\"0\"/>", dump.Stdout);
        Assert.Contains("<era block=\"2999\" era=\"3\"/>", dump.Stdout);
        // Only the writeset archived by the clean close (era 4) is left.
        Assert.Single(dump.Stdout.Split('\n'), l => l.Contains("<writeset "));
        Assert.Contains("<writeset era=\"4\" nr_bits=\"3000\">", dump.Stdout);
    }

    [Fact]
    public void Digest_ReturnsMetadataUseToTheLevelBefore()
    {
        string path = _dir.File("era.bin");
        using var md = EraMetadata.Create(path, 128, 40000);
        ulong Cycle()
        {
            for (uint b = 0; b < 40000; b += 97)
                md.Mark(b, b + 1);
            md.Checkpoint();
            while (md.DigestStep(md.CurrentEra)) { }
            md.Commit();
            return md.MetadataBlocksUsed;
        }
        ulong first = Cycle();  // the era array's blocks are now unshared
        ulong second = Cycle();
        ulong third = Cycle();
        Assert.Equal(first, second);
        Assert.Equal(first, third);
        md.Checkpoint();
        EraRefAudit.Verify(path, "after three digest cycles");
    }

    [Fact]
    public void MetadataSnapshot_SharesTheTrees_EraInvalidateAcceptsIt_DropFreesIt()
    {
        string path = _dir.File("era.bin");
        using var md = EraMetadata.Create(path, 128, 20000);
        md.Mark(0, 10);
        md.Checkpoint();
        md.Mark(5000, 5100);
        md.Commit();
        Assert.Throws<InvalidOperationException>(() => md.DropMetadataSnapshot());
        md.TakeMetadataSnapshot(); // archives era 2 first
        Assert.Equal(3u, md.CurrentEra);
        Assert.NotEqual(0ul, md.MetadataSnapshot);
        Assert.Throws<InvalidOperationException>(() => md.TakeMetadataSnapshot());
        EraRefAudit.Verify(path, "snapshot taken");
        EraOracle.AssertCheckPasses(path, "snapshot taken");
        Assert.Equal([(5000u, 5100u)], EraOracle.Invalidate(path, 2, metadataSnapshot: true));

        // The live trees change under the snapshot: digest removes writesets, the era array is copied.
        while (md.DigestStep(md.CurrentEra)) { }
        md.Mark(7, 8);
        md.Checkpoint();
        EraRefAudit.Verify(path, "live trees changed under the snapshot");
        EraOracle.AssertCheckPasses(path, "live trees changed under the snapshot");

        md.DropMetadataSnapshot();
        Assert.Equal(0ul, md.MetadataSnapshot);
        EraRefAudit.Verify(path, "snapshot dropped");
        Assert.Equal([(0u, 10u), (5000u, 5100u)], Runs(md, 1));
        Assert.Equal([(7u, 8u)], Runs(md, 3));
        Assert.Equal(1, Tool.Run("era_invalidate", "--written-since", "1", "--metadata-snapshot", path).ExitCode);
    }

    [Fact]
    public void HugeVolume_CreatesInWellUnderASecond_AndWritesLittle()
    {
        string path = _dir.File("era.bin");
        const uint blocks = 16u << 20; // 1 TiB at 64 KiB blocks
        var sw = Stopwatch.StartNew();
        using (var md = EraMetadata.Create(path, 128, blocks))
        {
            sw.Stop();
            md.Mark(blocks - 1, blocks);
            md.Mark(12345, 12400);
            md.Checkpoint();
            Assert.Equal([(12345u, 12400u), (blocks - 1, blocks)], Runs(md, 1));
        }
        long allocated = AllocatedBytes(path);
        Assert.True(allocated < 8L << 20, $"the fresh file occupies {allocated} bytes on disk");
        // Not a timed assertion: the figure goes to the test output for the report.
        _out.WriteLine($"create 16M blocks: {sw.ElapsedMilliseconds} ms, {allocated} bytes allocated");
        EraOracle.AssertCheckPasses(path, "16M blocks");
        Assert.Equal([(12345u, 12400u), (blocks - 1, blocks)], EraOracle.Invalidate(path, 1));

        // Five more eras of scattered writes: "written since" follows the writesets, not the volume.
        var rng = new Random(8);
        var expected = new SortedSet<uint> { blocks - 1 };
        for (uint b = 12345; b < 12400; b++)
            expected.Add(b);
        using (var md = EraMetadata.Open(path, EraOpenMode.Activate))
        {
            for (int era = 0; era < 5; era++)
            {
                for (int i = 0; i < 1000; i++)
                {
                    uint b = (uint)rng.Next((int)blocks);
                    md.Mark(b, b + 1);
                    expected.Add(b);
                }
                md.Checkpoint();
            }
            sw.Restart();
            var got = new List<uint>();
            md.WrittenSince(1, (f, e) => { for (uint b = f; b < e; b++) got.Add(b); });
            long since = sw.ElapsedMilliseconds;
            Assert.Equal(expected.ToList(), got);
            sw.Restart();
            while (md.DigestStep(md.CurrentEra)) { }
            md.Commit();
            long digest = sw.ElapsedMilliseconds;
            _out.WriteLine($"16M blocks, 7 archived writesets, {expected.Count} blocks: WrittenSince {since} ms; digest of all {digest} ms");
        }
        EraOracle.AssertCheckPasses(path, "16M blocks, digested");
    }

    [Fact]
    public async Task IsMarked_FromAnotherThread_NeverSeesABitBeforeItsCommitStarted()
    {
        string path = _dir.File("era.bin");
        const uint blocks = 4096;
        using var md = EraMetadata.Create(path, 128, blocks);
        // Per block: the era whose commit has been entered for it (written by the writer before Commit).
        var committing = new int[blocks];
        int era = (int)md.CurrentEra;
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        using var stop = new CancellationTokenSource();
        long reads = 0;
        var reader = Task.Run(() =>
        {
            var rng = new Random(5);
            while (!stop.IsCancellationRequested)
            {
                uint b = (uint)rng.Next((int)blocks);
                int eraBefore = Volatile.Read(ref era);
                bool marked = md.IsMarked(b);
                int started = Volatile.Read(ref committing[b]);
                // The era counter below moves only after a checkpoint swapped the in-core bits, so the
                // bits read belong to an era ≥ eraBefore, whose commit for b must have started.
                if (marked && started < eraBefore)
                    failures.Add($"block {b} marked in era {eraBefore} before its commit started (started {started})");
                reads++;
            }
        });
        var wrng = new Random(6);
        for (int round = 0; round < 300; round++)
        {
            var batch = new List<uint>();
            for (int i = 0; i < 20; i++)
            {
                uint b = (uint)wrng.Next((int)blocks);
                md.Mark(b, b + 1);
                batch.Add(b);
            }
            foreach (uint b in batch)
                Volatile.Write(ref committing[b], era);
            md.Commit();
            foreach (uint b in batch)
                Assert.True(md.IsMarked(b));
            if (round % 50 == 49)
                Volatile.Write(ref era, (int)md.Checkpoint());
        }
        stop.Cancel();
        await reader;
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(5)));
        _out.WriteLine($"{reads} concurrent IsMarked reads");
    }

    [Fact]
    public void BadArguments_AreRefusedAndChangeNothing()
    {
        string path = _dir.File("era.bin");
        Assert.Throws<ArgumentException>(() => EraMetadata.Create(path, 7, 100));
        Assert.Throws<ArgumentException>(() => EraMetadata.Create(path, 128, 0));
        Assert.Throws<ArgumentException>(() => EraMetadata.Create(path, 128, 100, 4096 * 10 + 1));
        Assert.False(File.Exists(path));
        Assert.Throws<FileNotFoundException>(() => EraMetadata.Open(path, EraOpenMode.ReadOnly));
        using (var md = EraMetadata.Create(path, 128, 100))
        {
            md.Mark(1, 2);
            md.Commit();
            Assert.Throws<ArgumentOutOfRangeException>(() => md.Mark(99, 101));
            Assert.Throws<ArgumentOutOfRangeException>(() => md.Mark(5, 4));
            Assert.Throws<ArgumentOutOfRangeException>(() => md.IsMarked(100));
            Assert.Throws<ArgumentOutOfRangeException>(() => md.DigestStep(5, 0));
            Assert.False(md.TransactionFailed);
            md.Mark(2, 3);
            md.Commit();
            Assert.Equal([(1u, 3u)], Runs(md, 1));
        }
        var junk = _dir.File("junk.bin");
        File.WriteAllBytes(junk, new byte[65536]);
        var e = Assert.Throws<CorruptMetadataException>(() => EraMetadata.Open(junk, EraOpenMode.Activate));
        Assert.Equal(0ul, e.Block);
        Assert.Equal(new byte[65536], File.ReadAllBytes(junk));
    }

    /// <summary>Bytes the file occupies on disk (sparse files), from du.</summary>
    private static long AllocatedBytes(string path)
    {
        var r = Tool.Run("du", "--block-size=1", path);
        Assert.Equal(0, r.ExitCode);
        return long.Parse(r.Stdout.Split('\t')[0]);
    }
}
