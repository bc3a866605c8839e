using System.CommandLine;
using BackupAppliance.Cli.Commands;
using BackupAppliance.PersistentData;
using BackupAppliance.Thin.Check;
using BackupAppliance.Thin.Tests.Support;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// The checker against the real thin_check 0.9.0 on files made by thin_restore (and hand-made kernel
/// operations): it accepts what thin_check accepts, fails wherever thin_check fails, names the damaged
/// block, uses thin_check's words for reference counts, and finds what 0.9.0 misses.
/// </summary>
public class ThinCheckerTests : IClassFixture<PoolSamples>
{
    private readonly PoolSamples _samples;
    private readonly Xunit.Abstractions.ITestOutputHelper _log;

    public ThinCheckerTests(PoolSamples samples, Xunit.Abstractions.ITestOutputHelper log)
    {
        _samples = samples;
        _log = log;
    }

    public static TheoryData<string> AllSamples() => new(PoolSamples.All);

    private static Tool.Result ThinCheck(string file, params string[] options) =>
        Tool.Run("thin_check", options.Append(file).ToArray());

    private static string Describe(ThinCheckReport r) =>
        string.Join("\n", r.Problems.Select(p => p.Message + (p.Fatal ? "" : " [non-fatal]")));

    /// <summary>thin_check's problem lines, without its nesting indent.</summary>
    private static string[] ThinCheckLines(Tool.Result r) =>
        r.Stderr.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).ToArray();

    [Theory]
    [MemberData(nameof(AllSamples))]
    public void AcceptsWhatThinCheckAccepts(string sample)
    {
        string file = _samples.PathOf(sample);
        Assert.Equal(0, ThinCheck(file).ExitCode);
        var report = ThinChecker.Check(file, metadataSnap: false);
        Assert.True(report.IsValid, Describe(report));
        Assert.Equal(0, report.ExitCode);
        Assert.Equal(RawPoolEdit.Superblock(file).TransactionId, report.TransactionId);
        var titles = report.Stages.Select(s => s.Title).ToList();
        Assert.Equal("examining superblock", titles[0]);
        Assert.Contains("checking space map counts", titles);
        Assert.Contains("checking data space map counts", titles);
        Assert.Equal(RawPoolEdit.Superblock(file).HeldRoot != 0, titles.Contains("examining metadata snapshot"));
    }

    [Fact]
    public void FreeBlockCountComesFromTheOnDiskSpaceMap()
    {
        // two_devs: blocks 0-7 and 9-11 are in use (8 is thin_restore's released template).
        var report = ThinChecker.Check(_samples.PathOf(PoolSamples.TwoDevs), metadataSnap: false);
        Assert.Equal(4096UL - 11, report.MetadataFreeBlocks);
    }

    [Theory]
    [InlineData(PoolSamples.Snap)]
    [InlineData(PoolSamples.SnapCow)]
    [InlineData(PoolSamples.SnapCowDetails)]
    public void MetadataSnapshotModeChecksOnlyTheSnapshotTrees(string sample)
    {
        string file = _samples.PathOf(sample);
        Assert.Equal(0, ThinCheck(file, "-m").ExitCode);
        var report = ThinChecker.Check(file, metadataSnap: true);
        Assert.True(report.IsValid, Describe(report));
        Assert.Equal(new[] { "examining superblock", "examining devices tree", "examining mapping tree" },
            report.Stages.Select(s => s.Title));
        Assert.Null(report.MetadataFreeBlocks);
    }

    [Fact]
    public void MetadataSnapshotModeWithoutSnapshotFailsLikeThinCheck()
    {
        string file = _samples.PathOf(PoolSamples.TwoDevs);
        var theirs = ThinCheck(file, "-m");
        Assert.Equal(1, theirs.ExitCode);
        Assert.Contains("No metadata snapshot found.", ThinCheckLines(theirs));
        var report = ThinChecker.Check(file, metadataSnap: true);
        var problem = Assert.Single(report.Problems);
        Assert.Equal("No metadata snapshot found.", problem.Message);
        Assert.Equal(1, report.ExitCode);
    }

    public static TheoryData<string> DamagedBlocks() => new()
    {
        "superblock", "details leaf", "top level leaf", "mapping internal node", "mapping leaf",
        "shared mapping leaf", "metadata index block", "metadata bitmap 0", "metadata bitmap 1",
        "metadata ref count tree", "data index node", "data bitmap 1", "data ref count tree",
    };

    /// <summary>Finds the block a damage scenario hits, by reading the structures, not by guessing numbers.</summary>
    private static ulong Locate(string file, string what)
    {
        var sb = RawPoolEdit.Superblock(file);
        return what switch
        {
            "superblock" => 0,
            "details leaf" => RawPoolEdit.DetailsSlot(file, 17).Leaf,
            "top level leaf" => RawPoolEdit.LeafFor(file, sb.DataMappingRoot, 0),
            "mapping internal node" => InternalRoot(file, 0),
            "mapping leaf" => RawPoolEdit.Leaves(file, RawPoolEdit.DeviceRoot(file, 17))[1],
            "shared mapping leaf" => RawPoolEdit.Leaves(file, RawPoolEdit.DeviceRoot(file, 30))[3],
            "metadata index block" => sb.MetadataSpaceMapRoot.BitmapRoot,
            "metadata bitmap 0" => RawPoolEdit.MetadataSlot(file, 0).Bitmap,
            "metadata bitmap 1" => RawPoolEdit.MetadataSlot(file, 16320).Bitmap,
            "metadata ref count tree" => sb.MetadataSpaceMapRoot.RefCountRoot,
            "data index node" => sb.DataSpaceMapRoot.BitmapRoot,
            "data bitmap 1" => RawPoolEdit.DataSlot(file, 20000).Bitmap,
            "data ref count tree" => sb.DataSpaceMapRoot.RefCountRoot,
            _ => throw new ArgumentException(what),
        };
    }

    private static ulong InternalRoot(string file, ulong dev)
    {
        ulong root = RawPoolEdit.DeviceRoot(file, dev);
        Assert.True(RawPoolEdit.Node(file, root).IsInternal, "device 0 has a multi-level tree");
        return root;
    }

    [Theory]
    [MemberData(nameof(DamagedBlocks))]
    public void AFlippedByteIsReportedAtItsBlockAndThinCheckAgrees(string what)
    {
        string file = _samples.Copy(PoolSamples.Shared);
        ulong block = Locate(file, what);
        RawPoolEdit.FlipByte(file, block, 64);

        Assert.Equal(1, ThinCheck(file).ExitCode);
        var report = ThinChecker.Check(file, metadataSnap: false);
        Assert.Equal(1, report.ExitCode);
        Assert.True(report.HasFatal);
        Assert.Contains(report.Problems, p => p.Block == block && p.Message.StartsWith($"block {block}: ", StringComparison.Ordinal) && p.Message.Contains("checksum"));
    }

    [Fact]
    public void ASharedLeafIsJudgedOnceThoughTwoDevicesReachIt()
    {
        string file = _samples.Copy(PoolSamples.Shared);
        ulong leaf = Locate(file, "shared mapping leaf");
        Assert.Equal(RawPoolEdit.Leaves(file, RawPoolEdit.DeviceRoot(file, 0))[3], leaf);
        RawPoolEdit.FlipByte(file, leaf, 100);
        var report = ThinChecker.Check(file, metadataSnap: false);
        Assert.Single(report.Problems, p => p.Block == leaf && p.Message.Contains("checksum"));
        // The damage hides the leaf's data references; that must not be listed as a thousand leaks.
        Assert.DoesNotContain(report.Problems, p => p.Message.StartsWith("data reference counts differ", StringComparison.Ordinal));
        Assert.Contains(report.Problems, p => !p.Fatal && p.Message.Contains("data blocks have higher counts than the references found"));
    }

    [Fact]
    public void MetadataCountTooLowUsesThinChecksExactWords()
    {
        string file = _samples.Copy(PoolSamples.TwoDevs);
        ulong leaf = RawPoolEdit.DeviceRoot(file, 1);
        Assert.Equal(1u, RawPoolEdit.MetadataCount(file, leaf));
        RawPoolEdit.SetMetadataCount(file, leaf, 0);

        string expected = $"metadata reference counts differ for block {leaf}, expected 1, but got 0";
        var theirs = ThinCheck(file);
        Assert.Equal(1, theirs.ExitCode);
        Assert.Contains(expected, ThinCheckLines(theirs));
        var report = ThinChecker.Check(file, metadataSnap: false);
        var problem = Assert.Single(report.Problems);
        Assert.Equal(expected, problem.Message);
        Assert.Equal(leaf, problem.Block);
        Assert.True(problem.Fatal);
    }

    [Fact]
    public void ALeakedMetadataBlockIsNonFatalButFails()
    {
        string file = _samples.Copy(PoolSamples.Many);
        ulong free = RawPoolEdit.FirstFreeMetadataBlock(file);
        RawPoolEdit.SetMetadataCount(file, free, 1);

        string expected = $"metadata reference counts differ for block {free}, expected 0, but got 1";
        var theirs = ThinCheck(file);
        Assert.Equal(1, theirs.ExitCode);
        Assert.Contains(expected, ThinCheckLines(theirs));
        var report = ThinChecker.Check(file, metadataSnap: false);
        var problem = Assert.Single(report.Problems);
        Assert.Equal(expected, problem.Message);
        Assert.False(problem.Fatal);
        Assert.Equal(1, report.ExitCode);
    }

    [Fact]
    public void ASharedRootNeedsOneCountPerReference()
    {
        string file = _samples.Copy(PoolSamples.Shared);
        ulong root = RawPoolEdit.DeviceRoot(file, 30);
        Assert.Equal(RawPoolEdit.DeviceRoot(file, 0), root);
        Assert.Equal(2u, RawPoolEdit.MetadataCount(file, root));
        RawPoolEdit.SetMetadataCount(file, root, 1);

        string expected = $"metadata reference counts differ for block {root}, expected 2, but got 1";
        Assert.Contains(expected, ThinCheckLines(ThinCheck(file)));
        Assert.Equal(expected, Assert.Single(ThinChecker.Check(file, metadataSnap: false).Problems).Message);
    }

    [Fact]
    public void DataCountErrorsAreFoundThoughThinCheck090SkipsThem()
    {
        string file = _samples.Copy(PoolSamples.Many);
        // 20100 is mapped once (device 17); 39990 is mapped by nobody.
        Assert.Equal(1u, RawPoolEdit.DataCount(file, 20100));
        RawPoolEdit.SetDataCount(file, 20100, 0);
        RawPoolEdit.SetDataCount(file, 39990, 1);

        Assert.Equal(0, ThinCheck(file).ExitCode);
        var report = ThinChecker.Check(file, metadataSnap: false);
        Assert.Equal(
            new[]
            {
                "data reference counts differ for block 20100, expected 1, but got 0",
                "data reference counts differ for block 39990, expected 0, but got 1",
            },
            report.Problems.Select(p => p.Message));
        Assert.Equal(new[] { true, false }, report.Problems.Select(p => p.Fatal));
        Assert.Equal("checking data space map counts", report.Stages.Single(s => s.Problems.Count > 0).Title);
    }

    [Fact]
    public void DataCountsOfThreeOrMoreLiveInTheOverflowTreeAndAreChecked()
    {
        // Blocks 0-99 are mapped by devices 0, 1 and 17: count 3, bitmap entry 3 + overflow tree.
        string file = _samples.Copy(PoolSamples.Many);
        var (bitmap, entry) = RawPoolEdit.DataSlot(file, 5);
        var data = RawPoolEdit.ReadBlock(file, bitmap);
        Assert.Equal(3u, SpaceMapBitmap.Get(data, entry));
        SpaceMapBitmap.Set(data, entry, 2);
        RawPoolEdit.Seal(file, bitmap, data, BlockKind.Bitmap);

        var report = ThinChecker.Check(file, metadataSnap: false);
        Assert.Contains(report.Problems, p => p.Message == "data reference counts differ for block 5, expected 3, but got 2" && p.Fatal);
        Assert.Contains(report.Problems, p => p.Block == 5 && p.Message.Contains("bitmap entry is not 3"));
    }

    [Fact]
    public void AWrongMappedBlocksIsFoundThoughThinCheck090SkipsIt()
    {
        string file = _samples.Copy(PoolSamples.Many);
        RawPoolEdit.ChangeDetails(file, 17, d => d with { MappedBlocks = d.MappedBlocks + 1 });
        ulong leaf = RawPoolEdit.DetailsSlot(file, 17).Leaf;

        Assert.Equal(0, ThinCheck(file).ExitCode);
        var problem = Assert.Single(ThinChecker.Check(file, metadataSnap: false).Problems);
        Assert.Equal($"block {leaf}: thin device 17 has mapped_blocks 701 in the device details tree, but its mapping tree holds 700 mappings", problem.Message);
        Assert.Equal(leaf, problem.Block);
    }

    [Fact]
    public void AMappingPastTheDataDeviceIsFound()
    {
        string file = _samples.Copy(PoolSamples.Many);
        ulong leaf = RawPoolEdit.DeviceRoot(file, 9);
        var node = RawPoolEdit.Node(file, leaf);
        Assert.Equal(39999UL, BlockTime.Unpack(node.Value64(0)).DataBlock);
        node.SetValue64(0, new BlockTime(40005, 2).Pack());
        RawPoolEdit.WriteNode(file, leaf, node);

        Assert.Equal(0, ThinCheck(file).ExitCode);
        var report = ThinChecker.Check(file, metadataSnap: false);
        Assert.Contains(report.Problems, p => p.Block == leaf &&
            p.Message == $"block {leaf}: virtual block 123456 maps to data block 40005, beyond the end of the data device (40000 blocks)");
        Assert.Contains(report.Problems, p => p.Message == "data reference counts differ for block 39999, expected 0, but got 1");
    }

    [Fact]
    public void DevicesMissingFromOneOfTheTwoTreesAreFound()
    {
        // Drop device 1 from the top level and release its mapping leaf, so the metadata counts stay right.
        string file = _samples.Copy(PoolSamples.TwoDevs);
        var sb = RawPoolEdit.Superblock(file);
        var top = RawPoolEdit.Node(file, sb.DataMappingRoot);
        ulong devRoot = RawPoolEdit.DeviceRoot(file, 1);
        top.DeleteAt(top.LowerBound(1));
        RawPoolEdit.WriteNode(file, sb.DataMappingRoot, top);
        RawPoolEdit.SetMetadataCount(file, devRoot, 0);

        Assert.Equal(0, ThinCheck(file).ExitCode);
        var report = ThinChecker.Check(file, metadataSnap: false);
        Assert.Contains(report.Problems, p => p.Message == $"block {sb.DeviceDetailsRoot}: thin device 1 is in the device details tree but has no mapping tree" && p.Fatal);

        // And the other way round: details without the device.
        file = _samples.Copy(PoolSamples.TwoDevs);
        var details = RawPoolEdit.Node(file, sb.DeviceDetailsRoot);
        details.DeleteAt(details.LowerBound(0));
        RawPoolEdit.WriteNode(file, sb.DeviceDetailsRoot, details);
        report = ThinChecker.Check(file, metadataSnap: false);
        Assert.Contains(report.Problems, p => p.Message == $"block {sb.DataMappingRoot}: thin device 0 has a mapping tree but no entry in the device details tree");
    }

    [Fact]
    public void AnUnderfullLeafIsReportedInThinChecksTerms()
    {
        string file = _samples.Copy(PoolSamples.BigDev);
        ulong root = RawPoolEdit.DeviceRoot(file, 5);
        ulong leaf = RawPoolEdit.Leaves(file, root)[0];
        var node = RawPoolEdit.Node(file, leaf);
        Assert.Equal(126, node.NrEntries);
        node.NrEntries = 50;
        RawPoolEdit.WriteNode(file, leaf, node);

        var theirs = ThinCheck(file);
        Assert.Equal(1, theirs.ExitCode);
        Assert.Contains($"too few entries in btree_node: 50, expected at least 84 (block {leaf}, max_entries = 252)", ThinCheckLines(theirs));
        var report = ThinChecker.Check(file, metadataSnap: false);
        Assert.Contains(report.Problems, p => p.Block == leaf && p.Fatal &&
            p.Message == $"block {leaf}: too few entries in btree_node: 50, expected at least 84 (max_entries = 252)");
        // The node is still readable, so the walk goes on: the mapping count is known to be off.
        Assert.Contains(report.Problems, p => p.Message.Contains("thin device 5 has mapped_blocks 1000 in the device details tree, but its mapping tree holds 924 mappings"));
    }

    [Fact]
    public void KeysOutOfOrderAndCyclesAreReportedAndNotFollowed()
    {
        string file = _samples.Copy(PoolSamples.Many);
        ulong root = InternalRoot(file, 0);
        var node = RawPoolEdit.Node(file, root);
        node.SetValue64(1, root); // child 1 is the root itself
        RawPoolEdit.WriteNode(file, root, node);
        var report = ThinChecker.Check(file, metadataSnap: false);
        Assert.Contains(report.Problems, p => p.Block == root && p.Message.Contains("cycle in the device mapping tree"));

        file = _samples.Copy(PoolSamples.Many);
        ulong leaf = RawPoolEdit.Leaves(file, RawPoolEdit.DeviceRoot(file, 17))[0];
        var l = RawPoolEdit.Node(file, leaf);
        l.SetKey(3, l.Key(1));
        RawPoolEdit.WriteNode(file, leaf, l);
        Assert.Equal(1, ThinCheck(file).ExitCode);
        report = ThinChecker.Check(file, metadataSnap: false);
        Assert.Contains(report.Problems, p => p.Block == leaf && p.Message.Contains("keys are out of order"));
    }

    [Fact]
    public void SuperblockFieldsThinCheck090IgnoresAreChecked()
    {
        string file = _samples.Copy(PoolSamples.TwoDevs);
        var sb = RawPoolEdit.Superblock(file);
        sb.MagicField = 12345;
        sb.MetadataBlockSize = 16;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(sb.Raw.AsSpan(360), 1); // incompat flags
        RawPoolEdit.WriteSuperblock(file, sb);

        Assert.Equal(0, ThinCheck(file).ExitCode);
        var problems = ThinChecker.Check(file, metadataSnap: false).Problems.Select(p => p.Message).ToList();
        Assert.Contains("block 0: bad magic in superblock: 12345, expected 27022010", problems);
        Assert.Contains("block 0: metadata block size in superblock is 16 sectors, expected 8", problems);
        Assert.Contains("block 0: superblock has incompatible feature flags 0x1 that no kernel supports", problems);
    }

    [Fact]
    public void ASnapshotSuperblockAtTheWrongPlaceIsCorrupt()
    {
        string file = _samples.Copy(PoolSamples.Snap);
        ulong held = RawPoolEdit.Superblock(file).HeldRoot;
        var copy = RawPoolEdit.ReadBlock(file, held);
        RawPoolEdit.Seal(file, held + 100, copy, BlockKind.ThinSuperblock); // a copy sealed for another place ...
        RawPoolEdit.WriteBlock(file, held, RawPoolEdit.ReadBlock(file, held + 100)); // ... written at the held root

        var report = ThinChecker.Check(file, metadataSnap: true);
        Assert.Contains(report.Problems, p => p.Block == held && p.Message.Contains("metadata snapshot superblock is corrupt") && p.Message.Contains("bad block nr"));
        Assert.Equal(1, ThinChecker.Check(file, metadataSnap: false).ExitCode);
    }

    /// <summary>
    /// Random damage to every block in use, each time resealed so the checksum still holds (the damage
    /// a buggy writer makes, not a bad disk): whenever thin_check fails, ours must fail too, and ours
    /// must never throw.
    /// </summary>
    [Theory]
    [InlineData(PoolSamples.TwoDevs, 1, 6)]
    [InlineData(PoolSamples.SnapCow, 2, 6)]
    [InlineData(PoolSamples.Shared, 3, 1)]
    public void CatchesEverythingThinCheckCatchesUnderRandomResealedDamage(string sample, int seed, int rounds)
    {
        var rng = new Random(seed);
        string file = _samples.Copy(sample);
        var used = UsedBlocks(file);
        int tries = 0, theirFailures = 0, ourFailures = 0;
        for (int round = 0; round < rounds; round++)
        {
            foreach (ulong block in used)
            {
                var original = RawPoolEdit.ReadBlock(file, block);
                var data = (byte[])original.Clone();
                var kind = KindOf(data, block);
                var (from, to) = InterestingBytes(data, kind);
                int offset = rng.Next(from, to);
                data[offset] = (byte)(data[offset] ^ (1 << rng.Next(8)));
                RawPoolEdit.Seal(file, block, data, kind);

                var theirs = ThinCheck(file);
                var ours = ThinChecker.Check(file, metadataSnap: false);
                tries++;
                ourFailures += ours.ExitCode;
                if (theirs.ExitCode != 0)
                {
                    theirFailures++;
                    Assert.True(ours.ExitCode == 1, $"{kind} block {block} byte {offset}: thin_check failed ({theirs.Stderr.Trim()}) but we passed");
                }
                RawPoolEdit.WriteBlock(file, block, original);
            }
        }
        _log.WriteLine($"{tries} damaged blocks: thin_check failed {theirFailures}, we failed {ourFailures}");
        Assert.True(theirFailures > 0, "the damage was never noticed by thin_check: the test proves nothing");
        Assert.Equal(0, ThinChecker.Check(file, metadataSnap: false).ExitCode);
    }

    private static List<ulong> UsedBlocks(string file)
    {
        var sb = RawPoolEdit.Superblock(file);
        var used = new List<ulong>();
        for (ulong b = 0; b < sb.MetadataSpaceMapRoot.NrBlocks; b++)
            if (RawPoolEdit.MetadataCount(file, b) != 0)
                used.Add(b);
        return used;
    }

    private static BlockKind KindOf(byte[] data, ulong block)
    {
        foreach (var kind in new[] { BlockKind.ThinSuperblock, BlockKind.BTreeNode, BlockKind.Bitmap, BlockKind.MetadataIndex })
            if (BlockChecksum.Problem(data, block, kind) is null)
                return kind;
        throw new InvalidOperationException($"block {block} is of no known kind");
    }

    /// <summary>The bytes whose change could matter: header and the used entries, not zeroed tails.</summary>
    private static (int From, int To) InterestingBytes(byte[] data, BlockKind kind)
    {
        switch (kind)
        {
            case BlockKind.ThinSuperblock:
                return (4, 364);
            case BlockKind.BTreeNode:
                var n = new BTreeNode(data);
                return (4, BTreeNode.HeaderSize + 8 * n.MaxEntries + n.ValueSize * Math.Max(1, n.NrEntries));
            case BlockKind.MetadataIndex:
                return (4, 16 + IndexEntry.Size * 2);
            default:
                return (4, 16 + 4096 / 4);
        }
    }

    // ---- the CLI command

    private static Tool.Result RunCheck(params string[] args)
    {
        var o = new StringWriter { NewLine = "\n" };
        var e = new StringWriter { NewLine = "\n" };
        var root = new RootCommand { ThinCheckCommand.Create(o, e) };
        int rc = root.Parse(MetadataSnapArgs.Normalize(args)).Invoke(new InvocationConfiguration { Output = o, Error = e });
        return new Tool.Result(rc, o.ToString(), e.ToString());
    }

    [Fact]
    public void CommandPrintsProgressAndProblemsLikeThinCheck()
    {
        string good = _samples.PathOf(PoolSamples.TwoDevs);
        var r = RunCheck("check", good);
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("examining superblock\nexamining devices tree\nexamining mapping tree\nchecking space map counts\nchecking data space map counts\n", r.Stderr);
        Assert.Equal("TRANSACTION_ID=3\nMETADATA_FREE_BLOCKS=4085\n", r.Stdout);

        string bad = _samples.Copy(PoolSamples.TwoDevs);
        ulong leaf = RawPoolEdit.DeviceRoot(bad, 1);
        RawPoolEdit.SetMetadataCount(bad, leaf, 0);
        r = RunCheck("check", bad);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains($"checking space map counts\n  metadata reference counts differ for block {leaf}, expected 1, but got 0\n", r.Stderr);

        r = RunCheck("check", "-q", bad);
        Assert.Equal((1, "", ""), (r.ExitCode, r.Stdout, r.Stderr));
    }

    [Fact]
    public void CommandMetadataSnapFlag()
    {
        string snap = _samples.PathOf(PoolSamples.SnapCow);
        ulong held = RawPoolEdit.Superblock(snap).HeldRoot;
        Assert.Equal(0, RunCheck("check", "-m", snap).ExitCode);
        Assert.Equal(0, RunCheck("check", "--metadata-snap", snap).ExitCode);
        Assert.Equal(0, RunCheck("check", $"-m{held}", snap).ExitCode);
        var wrong = RunCheck("check", $"--metadata-snap={held + 1}", snap);
        Assert.Equal(1, wrong.ExitCode);
        Assert.Contains("metadata snapshot does not match that in superblock", wrong.Stderr);

        var none = RunCheck("check", "-m", _samples.PathOf(PoolSamples.TwoDevs));
        Assert.Equal(1, none.ExitCode);
        Assert.Contains("  No metadata snapshot found.\n", none.Stderr);
    }

    [Fact]
    public void CommandFailsCleanlyOnMissingOrTinyFiles()
    {
        using var dir = Tool.TempDir();
        Assert.Equal(1, RunCheck("check", dir.File("absent")).ExitCode);
        string tiny = dir.Sparse("tiny", 100);
        var r = RunCheck("check", tiny);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("Metadata device/file too small.  Is this binary metadata?", r.Stderr);
        Assert.Equal(1, ThinCheck(tiny).ExitCode);

        string xml = dir.File("meta.xml");
        File.Copy(Path.Combine(Tool.OracleSamples, "two_devs.xml"), xml);
        using (var f = new FileStream(xml, FileMode.Open)) f.SetLength(8192);
        r = RunCheck("check", xml);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("This looks like XML.", r.Stderr);
    }
}
