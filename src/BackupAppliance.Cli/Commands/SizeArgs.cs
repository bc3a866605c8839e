using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace BackupAppliance.Cli.Commands;

/// <summary>Sizes in bytes with binary suffixes: 512, 64K, 10M, 4G, 1T (also KiB, MiB, …).</summary>
public static class SizeArgs
{
    public static bool TryParse(string text, out long bytes)
    {
        bytes = 0;
        string t = text.Trim();
        long unit = 1;
        string upper = t.ToUpperInvariant();
        foreach (var (suffix, mult) in new[] { ("TIB", 1L << 40), ("GIB", 1L << 30), ("MIB", 1L << 20), ("KIB", 1L << 10), ("T", 1L << 40), ("G", 1L << 30), ("M", 1L << 20), ("K", 1L << 10), ("B", 1L) })
        {
            if (upper.EndsWith(suffix, StringComparison.Ordinal))
            {
                unit = mult;
                t = t[..^suffix.Length];
                break;
            }
        }
        if (!long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out long n) || n > long.MaxValue / unit)
            return false;
        bytes = n * unit;
        return true;
    }

    public static Option<long?> Option(string name, string description, bool required = false) => new(name)
    {
        Description = description + " (bytes, or with K/M/G/T)",
        Required = required,
        CustomParser = r => Parse(r, name),
    };

    private static long? Parse(ArgumentResult r, string name)
    {
        string text = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
        if (TryParse(text, out long v) && v > 0)
            return v;
        r.AddError($"{name} expects a size such as 512, 64K, 10G or 1T, got '{text}'");
        return null;
    }

    public static string Human(long bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.Length - 1)
        {
            v /= 1024;
            u++;
        }
        return u == 0 ? $"{bytes} B" : $"{v:0.##} {units[u]}";
    }
}
