using System.Text.RegularExpressions;

namespace BackupAppliance.Era.Tests.Support;

/// <summary>era_check and era_invalidate 0.9.0 run on a file, with output parsed into runs.</summary>
public static partial class EraOracle
{
    public static void AssertCheckPasses(string file, string context)
    {
        var r = Tool.Run("era_check", file);
        Assert.True(r.ExitCode == 0, $"era_check failed ({context}):\n{r.Stderr}\n{r.Stdout}");
    }

    /// <summary>era_invalidate --written-since N as (first, endExclusive) runs.</summary>
    public static List<(uint First, uint End)> Invalidate(string file, uint era, bool metadataSnapshot = false)
    {
        var args = new List<string> { "--written-since", era.ToString() };
        if (metadataSnapshot)
            args.Add("--metadata-snapshot");
        args.Add(file);
        var r = Tool.Run("era_invalidate", args.ToArray());
        Assert.True(r.ExitCode == 0, $"era_invalidate --written-since {era} failed: {r.Stderr}");
        return ParseRuns(r.Stdout);
    }

    public static List<(uint First, uint End)> ParseRuns(string xml)
    {
        var runs = new List<(uint, uint)>();
        foreach (var line in xml.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var m = RangeLine().Match(line);
            if (m.Success)
            {
                runs.Add((uint.Parse(m.Groups[1].Value), uint.Parse(m.Groups[2].Value)));
                continue;
            }
            m = BlockLine().Match(line);
            if (m.Success)
            {
                uint b = uint.Parse(m.Groups[1].Value);
                runs.Add((b, b + 1));
                continue;
            }
            Assert.True(line.Trim() is "<blocks>" or "</blocks>", $"unexpected era_invalidate line: {line}");
        }
        return runs;
    }

    [GeneratedRegex("^  <range begin=\"(\\d+)\" end = \"(\\d+)\"/>$")]
    private static partial Regex RangeLine();

    [GeneratedRegex("^  <block block=\"(\\d+)\"/>$")]
    private static partial Regex BlockLine();
}
