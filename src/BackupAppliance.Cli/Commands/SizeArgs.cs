using System.CommandLine;
using System.CommandLine.Parsing;

namespace BackupAppliance.Cli.Commands;

/// <summary>Sizes in bytes with binary suffixes: 512, 64K, 10M, 4G, 1T (also KiB, MiB, …).</summary>
public static class SizeArgs
{
    public static bool TryParse(string text, out long bytes) => BackupAppliance.Core.ByteSize.TryParse(text, out bytes);

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

    public static string Human(long bytes) => BackupAppliance.Core.ByteSize.Human(bytes);
}
