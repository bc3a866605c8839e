using System.CommandLine;
using BackupAppliance.Era.Restore;

namespace BackupAppliance.Cli.Commands.Era;

/// <summary><c>bapp era restore -i XML -o FILE</c>: era metadata from era_dump XML into an existing file (like era_restore).</summary>
public static class EraRestoreCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var input = new Option<string>("--input", "-i") { Description = "XML written by era_dump", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "Metadata file to write (must exist, at least 32 KiB)", Required = true };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Print nothing but errors" };
        var cmd = new Command("restore", "Write era metadata from XML (like era_restore)") { input, output, quiet };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            EraRestorer.RestoreFile(r.GetValue(input)!, r.GetValue(output)!);
            return 0;
        }));
        return cmd;
    }
}
