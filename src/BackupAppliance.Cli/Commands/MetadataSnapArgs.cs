using System.CommandLine;

namespace BackupAppliance.Cli.Commands;

/// <summary>
/// The thin tools take the metadata-snapshot flag with an optional block that must be attached:
/// <c>-m</c>, <c>-m8</c>, <c>--metadata-snap</c>, <c>--metadata-snap=8</c>; <c>-m 8</c> leaves 8 as a
/// separate argument, as in thin_dump. Normalize rewrites the attached forms before parsing.
/// </summary>
public static class MetadataSnapArgs
{
    public const string BlockOptionName = "--metadata-snap-block";

    public static Option<bool> CreateFlag() => new("--metadata-snap", "-m")
    {
        Description = "Use the metadata snapshot (held root) instead of the live metadata",
    };

    public static Option<ulong?> CreateBlock()
    {
        var o = NumberArgs.UnsignedOptionShownAs(BlockOptionName, "-m/--metadata-snap", "A metadata snapshot block (it must match the superblock's held root)");
        o.Hidden = true;
        return o;
    }

    public static string[] Normalize(string[] args)
    {
        var result = new List<string>(args.Length + 2);
        foreach (string a in args)
        {
            if (a.Length > 2 && a.StartsWith("-m", StringComparison.Ordinal) && !a.StartsWith("--", StringComparison.Ordinal))
            {
                result.Add("-m");
                result.Add(BlockOptionName);
                result.Add(a[2..]);
            }
            else if (a.StartsWith("--metadata-snap=", StringComparison.Ordinal))
            {
                result.Add("--metadata-snap");
                result.Add(BlockOptionName);
                result.Add(a["--metadata-snap=".Length..]);
            }
            else
            {
                result.Add(a);
            }
        }
        return result.ToArray();
    }
}
