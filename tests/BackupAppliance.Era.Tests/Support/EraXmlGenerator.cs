using System.Text;

namespace BackupAppliance.Era.Tests.Support;

/// <summary>
/// Seeded era_dump-format XML written by hand (not by our emitter, so a round trip through the real
/// tools tests our reader and writer independently): an era array digested up to some era, archived
/// writesets above it, runs of written blocks.
/// </summary>
public static class EraXmlGenerator
{
    public sealed record Spec(int Seed, uint NrBlocks, uint CurrentEra, int Writesets, double Density);

    public static string Generate(Spec spec)
    {
        var rng = new Random(spec.Seed);
        uint lowest = (uint)Math.Max(1, (int)spec.CurrentEra - spec.Writesets - rng.Next(0, 6));
        var eras = Enumerable.Range((int)lowest, (int)(spec.CurrentEra - lowest))
            .OrderBy(_ => rng.Next()).Take(spec.Writesets).Select(e => (uint)e).Order().ToList();
        var x = new StringBuilder();
        x.Append($"<superblock uuid=\"\" block_size=\"128\" nr_blocks=\"{spec.NrBlocks}\" current_era=\"{spec.CurrentEra}\">\n");
        foreach (uint era in eras)
        {
            var bits = Runs(rng, spec.NrBlocks, spec.Density);
            x.Append($"  <writeset era=\"{era}\" nr_bits=\"{spec.NrBlocks}\">\n");
            for (uint b = 0; b < spec.NrBlocks; b++)
                x.Append($"    <bit block=\"{b}\" value=\"{(bits[b] ? "true" : "false")}\"/>\n");
            x.Append("  </writeset>\n");
        }
        x.Append("  <era_array>\n");
        var written = Runs(rng, spec.NrBlocks, 0.5);
        for (uint b = 0; b < spec.NrBlocks; b++)
        {
            uint era = written[b] && lowest > 1 ? (uint)rng.Next(1, (int)lowest) : 0;
            x.Append($"    <era block=\"{b}\" era=\"{era}\"/>\n");
        }
        x.Append("  </era_array>\n");
        x.Append("</superblock>\n");
        return x.ToString();
    }

    /// <summary>Runs of set blocks covering about <paramref name="density"/> of the volume, plus some single blocks.</summary>
    private static bool[] Runs(Random rng, uint nrBlocks, double density)
    {
        var bits = new bool[nrBlocks];
        long target = (long)(nrBlocks * density);
        long set = 0;
        while (set < target)
        {
            uint start = (uint)rng.Next((int)nrBlocks);
            int len = rng.Next(3) == 0 ? 1 : rng.Next(1, 200);
            for (uint b = start; b < Math.Min(nrBlocks, start + (uint)len); b++)
            {
                if (!bits[b])
                    set++;
                bits[b] = true;
            }
        }
        return bits;
    }
}
