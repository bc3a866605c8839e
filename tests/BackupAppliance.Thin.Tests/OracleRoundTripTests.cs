using System.Text;
using BackupAppliance.Thin.Tests.Support;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// Files made by the real thin_restore (from the shared samples and generated XML): our dump and delta
/// print exactly what thin_dump and thin_delta print; our restore writes files thin_check accepts and
/// thin_dump prints back.
/// </summary>
public class OracleRoundTripTests
{
    public static TheoryData<string> Inputs()
    {
        var d = new TheoryData<string>();
        foreach (var s in new[] { "two_devs.xml", "big_dev.xml", "nover.xml" })
            d.Add("sample:" + s);
        foreach (var seed in new[] { 1, 2, 3, 4, 5 })
            d.Add("generated:" + seed);
        return d;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void DumpDeltaAndRestoreMatchTheTools(string input)
    {
        using var dir = Tool.TempDir();
        string xml = input.StartsWith("sample:", StringComparison.Ordinal)
            ? Path.Combine(Tool.OracleSamples, input["sample:".Length..])
            : WriteGenerated(dir.File("gen.xml"), int.Parse(input["generated:".Length..]));

        string theirs = dir.Sparse("theirs.bin", 64L << 20);
        var restore = Tool.Run("thin_restore", "-i", xml, "-o", theirs);
        Assert.True(restore.ExitCode == 0, restore.Stderr);

        foreach (var fmt in new[] { "xml", "human_readable" })
            TextAssert.Same(Tool.Run("thin_dump", "-f", fmt, theirs).Stdout, Tool.Bapp("thin", "dump", "-f", fmt, theirs).Stdout, $"{input} dump -f {fmt}");

        var devs = Tool.Run("thin_dump", theirs).Stdout.Split('\n')
            .Where(l => l.Contains("<device ")).Select(l => l.Split('"')[1]).ToList();
        foreach (var a in devs)
            foreach (var b in devs)
            {
                foreach (var verbose in new[] { false, true })
                {
                    string[] args = verbose ? ["--snap1", a, "--snap2", b, "--verbose", theirs] : ["--snap1", a, "--snap2", b, theirs];
                    var expected = Tool.Run("thin_delta", args);
                    Assert.Equal(0, expected.ExitCode);
                    TextAssert.Same(expected.Stdout, Tool.Bapp(["thin", "delta", .. args]).Stdout, $"{input} delta {string.Join(' ', args[..^1])}");
                }
                var changes = Tool.Bapp("thin", "delta", "--snap1", a, "--snap2", b, "--changes-only", theirs).Stdout;
                TextAssert.Same(WithoutSame(Tool.Run("thin_delta", "--snap1", a, "--snap2", b, theirs).Stdout), changes, $"{input} changes-only {a} {b}");
            }

        string ours = dir.Sparse("ours.bin", 64L << 20);
        var r = Tool.Bapp("thin", "restore", "-i", xml, "-o", ours);
        Assert.True(r.ExitCode == 0, r.Stderr);
        Oracle.AssertCheckPasses(ours, input);
        TextAssert.Same(Tool.Run("thin_dump", theirs).Stdout, Tool.Run("thin_dump", ours).Stdout, $"{input} our restore");
    }

    [Fact]
    public void ChangesOnlyOnSharedSnapshotsEqualsThinDeltaWithoutSame()
    {
        using var dir = Tool.TempDir();
        string file = dir.Sparse("meta", 64L << 20);
        var rng = new Random(5150);
        using (var md = ThinMetadata.Create(file, 128, 1_000_000))
        {
            md.CreateThin(0);
            for (ulong v = 0; v < 60_000; v++)
                md.Insert(0, v * 2, md.AllocateDataBlock());
            md.Commit();
            ulong next = 1;
            for (int gen = 0; gen < 4; gen++)
            {
                md.CreateSnapshot(next, (ulong)rng.Next((int)next));
                next++;
                for (int i = 0; i < 600; i++)
                {
                    ulong dev = (ulong)rng.Next((int)next);
                    ulong v = (ulong)rng.Next(130_000);
                    if (rng.Next(4) == 0)
                        md.Remove(dev, v);
                    else
                        md.Insert(dev, v, md.AllocateDataBlock());
                }
                md.Commit();
            }
        }
        Oracle.AssertCheckPasses(file, "shared snapshots");
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 5; b++)
            {
                string sa = a.ToString(), sb = b.ToString();
                var full = Tool.Run("thin_delta", "--snap1", sa, "--snap2", sb, file).Stdout;
                TextAssert.Same(full, Tool.Bapp("thin", "delta", "--snap1", sa, "--snap2", sb, file).Stdout, $"full {a} {b}");
                TextAssert.Same(WithoutSame(full), Tool.Bapp("thin", "delta", "--snap1", sa, "--snap2", sb, "--changes-only", file).Stdout, $"changes-only {a} {b}");
                var verbose = Tool.Run("thin_delta", "--snap1", sa, "--snap2", sb, "--verbose", file).Stdout;
                TextAssert.Same(verbose, Tool.Bapp("thin", "delta", "--snap1", sa, "--snap2", sb, "--verbose", file).Stdout, $"verbose {a} {b}");
            }
    }

    [Fact]
    public void MissingDeviceAndBadArgumentsFailLikeTheTools()
    {
        using var dir = Tool.TempDir();
        string theirs = dir.Sparse("m.bin", 16L << 20);
        Assert.Equal(0, Tool.Run("thin_restore", "-i", Path.Combine(Tool.OracleSamples, "two_devs.xml"), "-o", theirs).ExitCode);
        var r = Tool.Bapp("thin", "delta", "--snap1", "1", "--snap2", "5", theirs);
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Contains("Unable to find mapping tree for snap2 (5)", r.Stderr);
        r = Tool.Bapp("thin", "delta", "--snap1", "1", theirs);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("--snap2 not specified", r.Stderr);
        r = Tool.Bapp("thin", "dump", "-m", theirs);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("no current metadata snap", r.Stderr);
        r = Tool.Bapp("thin", "restore", "-i", dir.File("missing.xml"), "-o", theirs);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("missing.xml", r.Stderr);
        // A bad XML leaves no valid metadata behind (like thin_restore, the superblock is zeroed).
        File.WriteAllText(dir.File("bad.xml"), "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"128\" nr_data_blocks=\"10\">\n<device dev_id=\"1\" mapped_blocks=\"0\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">\n<single_mapping origin_block=\"0\" data_block=\"10\" time=\"0\"/>\n</device></superblock>\n");
        string ours = dir.Sparse("ours.bin", 16L << 20);
        r = Tool.Bapp("thin", "restore", "-i", dir.File("bad.xml"), "-o", ours);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("mapping beyond end of data device (10 >= 10)", r.Stderr);
        Assert.NotEqual(0, Tool.Run("thin_check", ours).ExitCode);
        File.WriteAllText(dir.File("tag.xml"), "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"128\" nr_data_blocks=\"10\"><def name=\"x\"/></superblock>");
        r = Tool.Bapp("thin", "restore", "-i", dir.File("tag.xml"), "-o", ours);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("unknown tag type <def>", r.Stderr);
    }

    private static string WithoutSame(string delta) =>
        string.Concat(delta.Split('\n').Where(l => !l.TrimStart().StartsWith("<same ", StringComparison.Ordinal)).Select((l, i) => (i == 0 ? "" : "\n") + l));

    /// <summary>Random devices with runs, singles, varied times, and ranges copied between devices (as snapshots share).</summary>
    private static string WriteGenerated(string path, int seed)
    {
        var rng = new Random(seed);
        const ulong nrData = 2_000_000;
        int ndev = rng.Next(2, 6);
        var maps = new List<SortedDictionary<ulong, (ulong d, uint t)>>();
        ulong nextData = 0;
        for (int i = 0; i < ndev; i++)
        {
            var m = new SortedDictionary<ulong, (ulong, uint)>();
            if (i > 0 && rng.Next(2) == 0)
                foreach (var kv in maps[rng.Next(i)])
                    if (rng.Next(10) < 8)
                        m[kv.Key] = kv.Value;
            int runs = rng.Next(50, 400);
            for (int r = 0; r < runs; r++)
            {
                ulong v = (ulong)rng.Next(300_000);
                int len = rng.Next(0, 3) == 0 ? 1 : rng.Next(2, 200);
                uint t = (uint)rng.Next(4);
                ulong d = rng.Next(3) == 0 ? (ulong)rng.Next((int)nrData - 300) : nextData;
                for (int k = 0; k < len; k++)
                    m[v + (ulong)k] = (d + (ulong)k, rng.Next(20) == 0 ? t + 1 : t);
                nextData = Math.Max(nextData, d + (ulong)len) % (nrData - 300);
            }
            maps.Add(m);
        }
        var sb = new StringBuilder();
        sb.Append($"<superblock uuid=\"gen{seed}\" time=\"5\" transaction=\"{seed * 7}\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"{nrData}\">\n");
        for (int i = 0; i < ndev; i++)
        {
            sb.Append($"  <device dev_id=\"{i * 3 + 1}\" mapped_blocks=\"0\" transaction=\"{i}\" creation_time=\"{i}\" snap_time=\"{i + 1}\">\n");
            foreach (var (v, (d, t)) in maps[i])
                sb.Append($"    <single_mapping origin_block=\"{v}\" data_block=\"{d}\" time=\"{t}\"/>\n");
            sb.Append("  </device>\n");
        }
        sb.Append("</superblock>\n");
        File.WriteAllText(path, sb.ToString());
        return path;
    }
}

public class CliArgumentTests
{
    [Theory]
    [InlineData("--snap1 x --snap2 1", "--snap1 expects left device id")]
    [InlineData("--snap1 1 --snap2 -4", "--snap2 expects right device id")]
    [InlineData("-mx --snap1 1 --snap2 1", "-m/--metadata-snap expects a metadata snapshot block")]
    public void BadNumbersAreNamed(string args, string message)
    {
        var r = Tool.Bapp(["thin", "delta", .. args.Split(' '), "/nonexistent"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains(message, r.Stderr);
        Assert.DoesNotContain("System.", r.Stderr);
    }

    [Fact]
    public void MissingFileIsAnErrorOnStderrWithNothingOnStdout()
    {
        var r = Tool.Bapp("thin", "dump", "/nonexistent/meta");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.StartsWith("error: ", r.Stderr);
        Assert.Contains("/nonexistent/meta", r.Stderr);
    }
}
