using BackupAppliance.Era.Check;
using BackupAppliance.Era.Dump;
using BackupAppliance.Era.Invalidate;
using BackupAppliance.Era.Restore;
using BackupAppliance.Era.Tests.Support;
using Xunit.Abstractions;

namespace BackupAppliance.Era.Tests;

/// <summary>
/// Our era dump, invalidate, restore and check against thin-provisioning-tools 0.9.0: files made by
/// the real era_restore from generated XML and from the shared sample, files our engine wrote, and
/// damaged files.
/// </summary>
public sealed class EraToolsOracleTests : IDisposable
{
    private const long FileSize = 16L << 20;
    private readonly TempDir _dir = new();
    private readonly ITestOutputHelper _out;

    public EraToolsOracleTests(ITestOutputHelper output) => _out = output;

    public void Dispose() => _dir.Dispose();

    public static TheoryData<int, uint, uint, int, double> Specs => new()
    {
        // seed, nr_blocks, current_era, archived writesets, density of written blocks per writeset
        { 11, 1000, 300, 12, 0.05 },
        { 12, 4093, 120, 6, 0.2 },
        { 13, 33333, 57, 3, 0.01 },
        { 14, 100003, 140, 2, 0.003 },
        { 15, 131, 9, 8, 0.5 },
        { 16, 64 * 40 + 1, 2, 0, 0 },
    };

    [Theory]
    [MemberData(nameof(Specs))]
    public void GeneratedXml_ThroughRealRestore_OurDumpAndInvalidateAreByteIdentical(int seed, uint nrBlocks, uint currentEra, int writesets, double density)
    {
        string xml = _dir.File($"gen-{seed}.xml");
        File.WriteAllText(xml, EraXmlGenerator.Generate(new EraXmlGenerator.Spec(seed, nrBlocks, currentEra, writesets, density)));
        string real = _dir.Sparse($"real-{seed}.bin", FileSize);
        var r = Tool.Run("era_restore", "-i", xml, "-o", real);
        Assert.True(r.ExitCode == 0, $"era_restore: {r.Stderr}");

        AssertSameAsTools(real, $"seed {seed} (era_restore)", everyEra: true);
        Assert.Equal(File.ReadAllText(xml), OurDump(real, logical: false));
        Assert.True(EraChecker.Check(real).Passed, string.Join("\n", EraChecker.Check(real).Problems));

        // Our restore of the same XML: era_check passes, the real era_dump gives the input back.
        string ours = _dir.Sparse($"ours-{seed}.bin", FileSize);
        EraRestorer.RestoreFile(xml, ours);
        EraOracle.AssertCheckPasses(ours, $"seed {seed}, our restore");
        EraRefAudit.Verify(ours, $"seed {seed}, our restore");
        var dump = Tool.Run("era_dump", ours);
        Assert.Equal(0, dump.ExitCode);
        TextAssert.Same(File.ReadAllText(xml), dump.Stdout, $"seed {seed}: era_dump of our restore");
        AssertSameAsTools(ours, $"seed {seed} (our restore)", everyEra: false);
    }

    [Fact]
    public void SharedSample_ThroughBothRestores()
    {
        string xml = Path.Combine(Tool.OracleSamples, "era.xml");
        string real = _dir.Sparse("sample-real.bin", 4L << 20);
        Assert.Equal(0, Tool.Run("era_restore", "-i", xml, "-o", real).ExitCode);
        AssertSameAsTools(real, "era.xml", everyEra: true);
        Assert.Equal(File.ReadAllText(xml), OurDump(real, logical: false));
        // The documented --logical quirk: block 12 is in the writesets of eras 3 and 4 and shows era 3.
        Assert.Contains("    <era block=\"12\" era=\"3\"/>\n", OurDump(real, logical: true));

        // The engine activates a file the real tool wrote; its answers equal era_invalidate's.
        using (var md = EraMetadata.Open(real, EraOpenMode.Activate))
        {
            Assert.Equal(6u, md.CurrentEra);
            Assert.Equal([3u, 4u], md.ArchivedEras);
            for (uint era = 0; era <= 7; era++)
                Assert.Equal(EraOracle.Invalidate(real, era), EraModel.Runs(md, era));
        }
        EraOracle.AssertCheckPasses(real, "era.xml activated by the engine");
        EraRefAudit.Verify(real, "era.xml activated by the engine");

        string ours = _dir.Sparse("sample-ours.bin", 4L << 20);
        var restore = Tool.Bapp("era", "restore", "-i", xml, "-o", ours);
        Assert.True(restore.ExitCode == 0, restore.Stderr);
        EraOracle.AssertCheckPasses(ours, "era.xml, our restore");
        Assert.Equal(File.ReadAllText(xml), Tool.Run("era_dump", ours).Stdout);
        Assert.Equal("<blocks>\n  <range begin=\"0\" end = \"14\"/>\n  <range begin=\"30\" end = \"40\"/>\n  <block block=\"50\"/>\n  <block block=\"70\"/>\n  <block block=\"99\"/>\n</blocks>\n",
            Tool.Bapp("era", "invalidate", "--written-since", "1", ours).Stdout);
    }

    [Fact]
    public void FilesOurEngineWrote_ReadTheSameThroughTheRealTools()
    {
        string path = _dir.File("engine.bin");
        var rng = new Random(21);
        using (var md = EraMetadata.Create(path, 128, 20011))
        {
            for (int era = 0; era < 40; era++)
            {
                for (int i = 0; i < 30; i++)
                {
                    uint b = (uint)rng.Next(20011);
                    md.Mark(b, Math.Min(20011u, b + (uint)rng.Next(1, 40)));
                }
                md.Checkpoint();
                if (era % 7 == 3)
                    while (md.DigestStep(md.CurrentEra - 5)) { }
            }
            md.DigestStep(md.CurrentEra, 200); // one writeset half digested
            md.Mark(5, 6);
            md.Commit();
        }
        AssertSameAsTools(path, "engine file", everyEra: true);
        Assert.True(EraChecker.Check(path).Passed);

        using (var md = EraMetadata.Open(path, EraOpenMode.Activate))
        {
            md.TakeMetadataSnapshot();
            md.Mark(7, 9);
            md.Checkpoint();
            uint era = md.CurrentEra - 3;
            var theirs = Tool.Run("era_invalidate", "--written-since", era.ToString(), "--metadata-snapshot", path);
            Assert.Equal(0, theirs.ExitCode);
            using var reader = EraReader.Open(path);
            Assert.Equal(theirs.Stdout, Invalidate(reader, era, metadataSnapshot: true));
        }
    }

    [Fact]
    public void RestoreChecksTheOutputFileLikeEraRestore()
    {
        string xml = Path.Combine(Tool.OracleSamples, "era.xml");
        string missing = _dir.File("missing.bin");
        string small = _dir.Sparse("small.bin", 28 * 1024);
        string empty = _dir.Sparse("empty.bin", 0);
        foreach (var (file, first) in new[] { (missing, "Output file does not exist."), (small, "Output file too small."), (empty, "Zero size output file.") })
        {
            var real = Tool.Run("era_restore", "-i", xml, "-o", file);
            Assert.Equal(1, real.ExitCode);
            var ex = Assert.ThrowsAny<Exception>(() => EraRestorer.RestoreFile(xml, file));
            Assert.StartsWith(first, ex.Message);
            Assert.Equal(real.Stderr.TrimEnd('\n'), ex.Message);
        }
        Assert.False(File.Exists(missing));
        Assert.Equal(28 * 1024, new FileInfo(small).Length);
    }

    [Fact]
    public void BadXml_IsRefused_TheOutputSuperblockZeroed()
    {
        string xml = _dir.File("bad.xml");
        string output = _dir.Sparse("out.bin", 1L << 20);
        string[] bad =
        [
            "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"10\" current_era=\"5\"><foo/></superblock>",
            "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"10\"></superblock>",
            "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"10\" current_era=\"5\"><era_array><era block=\"10\" era=\"1\"/></era_array></superblock>",
            "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"10\" current_era=\"5\"><writeset era=\"1\" nr_bits=\"10\"><bit block=\"3\" value=\"yes\"/></writeset></superblock>",
            "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"10\" current_era=\"5\"><writeset era=\"1\" nr_bits=\"10\"><bit block=\"10\" value=\"true\"/></writeset></superblock>",
            "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"10\" current_era=\"5\"><era block=\"1\" era=\"1\"/></superblock>",
            "<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"10\" current_era=\"5\"",
        ];
        foreach (string text in bad)
        {
            File.WriteAllText(xml, text);
            Assert.Equal(1, Tool.Run("era_restore", "-i", xml, "-o", output).ExitCode); // the tool refuses it too
            EraRestorer.RestoreFile(Path.Combine(Tool.OracleSamples, "era.xml"), output);
            Assert.Equal(0, Tool.Run("era_check", output).ExitCode);
            Assert.ThrowsAny<FormatException>(() => EraRestorer.RestoreFile(xml, output));
            Assert.Equal(new byte[4096], File.ReadAllBytes(output).AsSpan(0, 4096).ToArray());
        }
    }

    [Theory]
    [InlineData("superblock")]
    [InlineData("writeset tree")]
    [InlineData("bitset btree")]
    [InlineData("bitset block")]
    [InlineData("era array btree")]
    [InlineData("era array block")]
    public void FlippedByte_IsRefusedWithTheBlockNamed(string where)
    {
        string path = _dir.Sparse("sample.bin", 4L << 20);
        Assert.Equal(0, Tool.Run("era_restore", "-i", Path.Combine(Tool.OracleSamples, "era.xml"), "-o", path).ExitCode);
        ulong block = Locate(path, where);
        byte[] data = File.ReadAllBytes(path);
        data[block * 4096 + 100] ^= 0x40;
        File.WriteAllBytes(path, data);
        Assert.NotEqual(0, Tool.Run("era_check", path).ExitCode); // the tool sees it too (0.9.0 even aborts on some)

        var report = EraChecker.Check(path);
        Assert.False(report.Passed);
        Assert.StartsWith($"block {block}: ", report.Problems[0]);
        Assert.Contains("checksum", report.Problems[0]);

        var check = Tool.Bapp("era", "check", path);
        Assert.Equal(1, check.ExitCode);
        Assert.Contains($"block {block}: ", check.Stderr);
        var dump = Tool.Bapp("era", "dump", path);
        Assert.Equal(1, dump.ExitCode);
        Assert.Contains($"block {block}: bad checksum", dump.Stderr);
        var inv = Tool.Bapp("era", "invalidate", "--written-since", "0", path);
        Assert.Equal(1, inv.ExitCode);
        Assert.Contains($"block {block}: bad checksum", inv.Stderr);
        Assert.Equal("", inv.Stdout);
        var open = Assert.ThrowsAny<Core.CorruptMetadataException>(() =>
        {
            using var md = EraMetadata.Open(path, EraOpenMode.ReadOnly);
            md.WrittenSince(1, (_, _) => { });
        });
        Assert.Equal(block, open.Block);
    }

    [Fact]
    public void SuperblockFieldProblems_AreNamedLikeEraCheck()
    {
        string good = _dir.Sparse("good.bin", 4L << 20);
        Assert.Equal(0, Tool.Run("era_restore", "-i", Path.Combine(Tool.OracleSamples, "era.xml"), "-o", good).ExitCode);
        (int Offset, ulong Value, int Size, string Expected)[] cases =
        [
            (32, 12345, 8, "magic is incorrect: 12345"),
            (40, 2, 4, "version incorrect: 2"),
            (176, 16, 4, "metadata block size incorrect: 16"),
            (8, 5000, 8, "blocknr out of bounds: 5000 >= 1024"),
            (200, 5, 8, "writeset tree root and era array both point to the same block: 5"),
            (208, 0, 8, "era array root points back to the superblock"),
        ];
        foreach (var c in cases)
        {
            string path = _dir.File($"sb-{c.Offset}.bin");
            File.Copy(good, path, overwrite: true);
            var sb = new EraSuperblock(File.ReadAllBytes(path)[..4096]);
            var raw = sb.Raw;
            if (c.Size == 8)
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(raw.AsSpan(c.Offset), c.Value);
            else
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(c.Offset), (uint)c.Value);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(raw, PersistentData.BlockChecksum.Compute(raw, PersistentData.BlockKinds.Salt(PersistentData.BlockKind.EraSuperblock)));
            using (var f = new FileStream(path, FileMode.Open, FileAccess.Write))
                f.Write(raw);
            var real = Tool.Run("era_check", path);
            Assert.Equal(1, real.ExitCode);
            Assert.Contains(c.Expected, real.Stderr);
            var ours = EraChecker.Check(path);
            Assert.Equal($"block 0: superblock is invalid: {c.Expected}", ours.Problems.Single());
        }
    }

    [Fact]
    public void EraTooGreat_IsReportedWithTheArrayBlock()
    {
        string path = _dir.Sparse("great.bin", 4L << 20);
        File.WriteAllText(_dir.File("great.xml"), File.ReadAllText(Path.Combine(Tool.OracleSamples, "era.xml")).Replace("current_era=\"5\"", "current_era=\"0\""));
        Assert.Equal(0, Tool.Run("era_restore", "-i", _dir.File("great.xml"), "-o", path).ExitCode);
        var real = Tool.Run("era_check", path);
        Assert.Equal(1, real.ExitCode);
        Assert.Contains("block: 30, era: 2", real.Stderr);
        var ours = EraChecker.Check(path);
        ulong arrayBlock = Locate(path, "era array block");
        // Blocks 0-9 hold era 1 and 30-39 era 2: twenty eras above 0, ten reported and the rest counted.
        Assert.Equal($"block {arrayBlock}: era array: era too great: entry 0 holds era 1, the current era is 0", ours.Problems[0]);
        Assert.Equal(EraChecker.MaxReportedEras + 1, ours.Problems.Count);
        Assert.Equal("era array: 10 more blocks have an era greater than the current era 0", ours.Problems[^1]);
    }

    /// <summary>Our dump (plain and --logical) and invalidate (every era, or a sample) equal the tools' output byte for byte.</summary>
    private void AssertSameAsTools(string path, string context, bool everyEra)
    {
        foreach (bool logical in new[] { false, true })
        {
            var real = logical ? Tool.Run("era_dump", "--logical", path) : Tool.Run("era_dump", path);
            Assert.True(real.ExitCode == 0, $"{context}: era_dump: {real.Stderr}");
            TextAssert.Same(real.Stdout, OurDump(path, logical), $"{context}: dump{(logical ? " --logical" : "")}");
        }
        using var reader = EraReader.Open(path);
        uint current = reader.Superblock.CurrentEra;
        var eras = Enumerable.Range(0, (int)current + 2).Select(e => (uint)e);
        if (!everyEra)
            eras = eras.Where(e => e <= 2 || e >= current - 2 || e % 17 == 0);
        int compared = 0;
        foreach (uint era in eras)
        {
            var real = Tool.Run("era_invalidate", "--written-since", era.ToString(), path);
            Assert.True(real.ExitCode == 0, $"{context}: era_invalidate: {real.Stderr}");
            TextAssert.Same(real.Stdout, Invalidate(reader, era, metadataSnapshot: false), $"{context}: invalidate --written-since {era}");
            compared++;
        }
        _out.WriteLine($"{context}: dumps and {compared} invalidations byte-identical");
    }

    private static string OurDump(string path, bool logical)
    {
        using var reader = EraReader.Open(path);
        var w = new StringWriter { NewLine = "\n" };
        EraDumper.Dump(reader, new EraXmlEmitter(w), logical);
        return w.ToString();
    }

    private static string Invalidate(EraReader reader, uint era, bool metadataSnapshot)
    {
        var w = new StringWriter { NewLine = "\n" };
        EraInvalidator.Emit(EraInvalidator.WrittenSince(reader, era, metadataSnapshot), w);
        return w.ToString();
    }

    /// <summary>Where a structure of an era file lives, found from its superblock and tree roots.</summary>
    private static ulong Locate(string path, string where)
    {
        var bytes = File.ReadAllBytes(path);
        byte[] Block(ulong b) => bytes.AsSpan((int)b * 4096, 4096).ToArray();
        var sb = new EraSuperblock(Block(0));
        ulong FirstValue(ulong node) => new PersistentData.BTreeNode(Block(node)).Value64(0);
        ulong firstBitsetRoot = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(new PersistentData.BTreeNode(Block(sb.WritesetTreeRoot)).Value(0)[4..]);
        return where switch
        {
            "superblock" => 0,
            "writeset tree" => sb.WritesetTreeRoot,
            "bitset btree" => firstBitsetRoot,
            "bitset block" => FirstValue(firstBitsetRoot),
            "era array btree" => sb.EraArrayRoot,
            "era array block" => FirstValue(sb.EraArrayRoot),
            _ => throw new ArgumentOutOfRangeException(nameof(where)),
        };
    }
}
