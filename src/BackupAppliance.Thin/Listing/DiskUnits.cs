using System.Globalization;

namespace BackupAppliance.Thin.Listing;

/// <summary>thin_ls's human-readable sizes (base/disk_units format_disk_unit): 6464KiB, 313MiB, 20TiB.</summary>
public static class DiskUnits
{
    public const ulong SectorSize = 512;

    // thin_ls indexes past PiB into undefined memory; we name the next unit instead.
    private static readonly string[] Suffixes = { "", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };

    /// <summary>
    /// Whole 1024-divisions while the value exceeds 1 MiB (truncating), then one rounded division
    /// (half away from zero, like C round()) if it still exceeds 8 KiB.
    /// </summary>
    public static string FormatSectors(ulong sectors)
    {
        ulong n = unchecked(sectors * SectorSize);
        int unit = 0;
        while (n > 1024UL * 1024UL)
        {
            n /= 1024;
            unit++;
        }
        if (n > 8 * 1024UL)
        {
            n = (ulong)Math.Round(n / 1024.0, MidpointRounding.AwayFromZero);
            unit++;
        }
        return n.ToString(CultureInfo.InvariantCulture) + Suffixes[unit];
    }
}
