using System.Globalization;

namespace BackupAppliance.Core;

/// <summary>Sizes in bytes as people write them: 512, 64K, 10M, 4G, 1T (also KiB, MiB, …; binary units).</summary>
public static class ByteSize
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

    /// <summary>A short human form: 1.5 GiB, 640 KiB, 12 B.</summary>
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
