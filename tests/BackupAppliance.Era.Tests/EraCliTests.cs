using BackupAppliance.Era.Tests.Support;

namespace BackupAppliance.Era.Tests;

/// <summary><c>bapp era dump|invalidate|restore|check</c>: outputs equal the real tools', exit codes, clear errors.</summary>
public sealed class EraCliTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly string _sample;
    private readonly string _xml = Path.Combine(Tool.OracleSamples, "era.xml");

    public EraCliTests()
    {
        _sample = _dir.Sparse("sample.bin", 4L << 20);
        var r = Tool.Run("era_restore", "-i", _xml, "-o", _sample);
        Assert.True(r.ExitCode == 0, r.Stderr);
    }

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Dump_ToStdoutAndToAFile_EqualsEraDump()
    {
        var ours = Tool.Bapp("era", "dump", _sample);
        Assert.Equal(0, ours.ExitCode);
        Assert.Equal(Tool.Run("era_dump", _sample).Stdout, ours.Stdout);

        string outFile = _dir.File("dump.xml");
        var toFile = Tool.Bapp("era", "dump", "--logical", "-o", outFile, _sample);
        Assert.Equal(0, toFile.ExitCode);
        Assert.Equal("", toFile.Stdout);
        Assert.Equal(Tool.Run("era_dump", "--logical", _sample).Stdout, File.ReadAllText(outFile));
    }

    [Fact]
    public void Invalidate_EqualsEraInvalidate_AndNeedsWrittenSince()
    {
        for (int era = 0; era <= 6; era++)
        {
            var ours = Tool.Bapp("era", "invalidate", "--written-since", era.ToString(), _sample);
            Assert.Equal(0, ours.ExitCode);
            Assert.Equal(Tool.Run("era_invalidate", "--written-since", era.ToString(), _sample).Stdout, ours.Stdout);
        }
        string outFile = _dir.File("inv.xml");
        Assert.Equal(0, Tool.Bapp("era", "invalidate", "--written-since", "4", "-o", outFile, _sample).ExitCode);
        Assert.Equal("<blocks>\n  <range begin=\"12\" end = \"14\"/>\n  <block block=\"70\"/>\n  <block block=\"99\"/>\n</blocks>\n", File.ReadAllText(outFile));

        var missing = Tool.Bapp("era", "invalidate", _sample);
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("Please specify --written-since", missing.Stderr);
        var notNumber = Tool.Bapp("era", "invalidate", "--written-since", "abc", _sample);
        Assert.Equal(1, notNumber.ExitCode);
        Assert.Contains("--written-since", notNumber.Stderr);
        Assert.Contains("'abc'", notNumber.Stderr);
        var tooBig = Tool.Bapp("era", "invalidate", "--written-since", "4294967296", _sample);
        Assert.Equal(1, tooBig.ExitCode);
        Assert.Contains("32-bit", tooBig.Stderr);

        // The era file from era.xml holds no metadata snapshot: the same refusal as era_invalidate.
        var noSnap = Tool.Bapp("era", "invalidate", "--written-since", "4", "--metadata-snapshot", _sample);
        Assert.Equal(1, noSnap.ExitCode);
        Assert.Equal("", noSnap.Stdout);
        Assert.Contains("no metadata snapshot taken.", noSnap.Stderr);
        Assert.Contains("no metadata snapshot taken.", Tool.Run("era_invalidate", "--written-since", "4", "--metadata-snapshot", _sample).Stderr);
    }

    [Fact]
    public void Restore_WritesAFileEraCheckAccepts_AndRefusesBadArguments()
    {
        string output = _dir.Sparse("restored.bin", 1L << 20);
        var ok = Tool.Bapp("era", "restore", "-i", _xml, "-o", output);
        Assert.True(ok.ExitCode == 0, ok.Stderr);
        Assert.Equal(0, Tool.Run("era_check", output).ExitCode);
        Assert.Equal(File.ReadAllText(_xml), Tool.Run("era_dump", output).Stdout);
        byte[] before = File.ReadAllBytes(output);

        var noInput = Tool.Bapp("era", "restore", "-o", output);
        Assert.Equal(1, noInput.ExitCode);
        Assert.Contains("--input", noInput.Stderr);
        var noOutput = Tool.Bapp("era", "restore", "-i", _xml);
        Assert.Equal(1, noOutput.ExitCode);
        Assert.Contains("--output", noOutput.Stderr);
        var missingInput = Tool.Bapp("era", "restore", "-i", _dir.File("nope.xml"), "-o", output);
        Assert.Equal(1, missingInput.ExitCode);
        Assert.Contains("nope.xml does not exist", missingInput.Stderr);
        var missingOutput = Tool.Bapp("era", "restore", "-i", _xml, "-o", _dir.File("nope.bin"));
        Assert.Equal(1, missingOutput.ExitCode);
        Assert.Contains("Output file does not exist.", missingOutput.Stderr);
        Assert.Equal(before, File.ReadAllBytes(output)); // bad arguments changed nothing
    }

    [Fact]
    public void Check_ExitCodes()
    {
        var good = Tool.Bapp("era", "check", _sample);
        Assert.Equal(0, good.ExitCode);
        Assert.Equal("examining superblock\n", good.Stderr);

        string bad = _dir.File("bad.bin");
        var bytes = File.ReadAllBytes(_sample);
        bytes[100] ^= 0x40;
        File.WriteAllBytes(bad, bytes);
        var corrupt = Tool.Bapp("era", "check", bad);
        Assert.Equal(1, corrupt.ExitCode);
        Assert.Contains("block 0: superblock is corrupt: bad checksum in superblock", corrupt.Stderr);
        var quiet = Tool.Bapp("era", "check", "-q", bad);
        Assert.Equal(1, quiet.ExitCode);
        Assert.Equal("", quiet.Stderr);

        string xmlAsMetadata = _dir.File("xml.bin");
        File.Copy(_xml, xmlAsMetadata);
        var xml = Tool.Bapp("era", "check", xmlAsMetadata);
        Assert.Equal(1, xml.ExitCode);
        Assert.Contains("This looks like XML.", xml.Stderr);

        var missing = Tool.Bapp("era", "check", _dir.File("nope.bin"));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("nope.bin: No such file or directory", missing.Stderr);
        var directory = Tool.Bapp("era", "check", _dir.Path);
        Assert.Equal(1, directory.ExitCode);
        Assert.Contains("Not a block device or regular file", directory.Stderr);
        var noFile = Tool.Bapp("era", "check");
        Assert.Equal(1, noFile.ExitCode);
        Assert.NotEqual("", noFile.Stderr);
    }

    [Fact]
    public void Dump_OfMissingOrTinyFiles_FailsClearly()
    {
        var missing = Tool.Bapp("era", "dump", _dir.File("nope.bin"));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("nope.bin", missing.Stderr);
        string tiny = _dir.File("tiny.bin");
        File.WriteAllBytes(tiny, new byte[100]);
        var small = Tool.Bapp("era", "dump", tiny);
        Assert.Equal(1, small.ExitCode);
        Assert.Contains("Metadata is not large enough for superblock.", small.Stderr);
        Assert.Contains("Metadata is not large enough for superblock.", Tool.Run("era_dump", tiny).Stderr);
    }
}
