using System.CommandLine;
using BackupAppliance.Thin.Restore;

namespace BackupAppliance.Cli.Commands;

/// <summary><c>bapp thin restore -i XML -o FILE</c>: builds metadata that thin_check accepts.</summary>
public static class ThinRestoreCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var input = new Option<string>("--input", "-i") { Description = "XML written by thin_dump", Required = true };
        var output = new Option<string>("--output", "-o") { Description = "Metadata file to write (must exist, at least 32 KiB)", Required = true };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Print nothing but errors" };
        var cmd = new Command("restore", "Write thin metadata from XML (like thin_restore)") { input, output, quiet };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            string inPath = r.GetValue(input)!;
            if (!File.Exists(inPath))
                throw new FileNotFoundException($"input file {inPath} does not exist");
            using var restorer = ThinRestorer.RestoreFile(inPath, r.GetValue(output)!);
            foreach (var w in restorer.Warnings)
                stderr.WriteLine($"warning: {w}");
            return 0;
        }));
        return cmd;
    }
}
