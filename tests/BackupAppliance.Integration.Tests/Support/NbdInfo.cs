using System.Text.RegularExpressions;

namespace BackupAppliance.Integration.Tests.Support;

public sealed record ListedExport(string Name, long Size, bool ReadOnly, string? Description);

/// <summary>One line of <c>nbdinfo --map</c>: offset, length, base:allocation type and its name.</summary>
public sealed record MapExtent(long Offset, long Length, int Type, string Description)
{
    public long End => Offset + Length;
}

/// <summary>Runs nbdinfo and parses what it prints.</summary>
public static partial class NbdInfo
{
    /// <summary><c>nbdinfo --list</c>: every export, in the order listed.</summary>
    public static async Task<IReadOnlyList<ListedExport>> ListAsync(string serverUri)
    {
        var r = await Tool.RunOkAsync("nbdinfo", "--list", serverUri);
        var exports = new List<ListedExport>();
        var headers = ExportHeader().Matches(r.Stdout);
        for (int i = 0; i < headers.Count; i++)
        {
            string name = headers[i].Groups[1].Value;
            int start = headers[i].Index + headers[i].Length, end = i + 1 < headers.Count ? headers[i + 1].Index : r.Stdout.Length;
            var fields = Fields(r.Stdout[start..end]);
            Assert.True(fields.ContainsKey("export-size") && fields.ContainsKey("is_read_only"), $"export {name} lacks fields in\n{r.Stdout}");
            exports.Add(new ListedExport(name, long.Parse(fields["export-size"].Split(' ')[0]), fields["is_read_only"] == "true",
                fields.GetValueOrDefault("description")));
        }
        return exports;
    }

    /// <summary><c>nbdinfo URI</c> fields ("export-size", "is_read_only", ...).</summary>
    public static async Task<Dictionary<string, string>> DetailsAsync(string uri) =>
        Fields((await Tool.RunOkAsync("nbdinfo", uri)).Stdout);

    /// <summary><c>nbdinfo --map</c>, adjacent extents of the same type merged (a server may split its answer).</summary>
    public static async Task<IReadOnlyList<MapExtent>> MapAsync(string uri)
    {
        var r = await Tool.RunOkAsync("nbdinfo", "--map", uri);
        var merged = new List<MapExtent>();
        foreach (var line in r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var p = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(p.Length >= 4, $"unexpected nbdinfo --map line '{line}'");
            var e = new MapExtent(long.Parse(p[0]), long.Parse(p[1]), int.Parse(p[2]), string.Join(' ', p[3..]));
            if (merged.Count > 0 && merged[^1].Type == e.Type && merged[^1].End == e.Offset)
                merged[^1] = merged[^1] with { Length = merged[^1].Length + e.Length };
            else
                merged.Add(e);
        }
        return merged;
    }

    private static Dictionary<string, string> Fields(string text) =>
        text.Split('\n')
            .Select(l => l.Trim())
            .Where(l => l.Contains(": "))
            .Select(l => l.Split(": ", 2))
            .GroupBy(p => p[0])
            .ToDictionary(g => g.Key, g => g.First()[1]);

    [GeneratedRegex("^export=\"([^\"]*)\":\\s*$", RegexOptions.Multiline)]
    private static partial Regex ExportHeader();
}
