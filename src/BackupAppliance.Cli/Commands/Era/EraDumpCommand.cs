using System.CommandLine;
using BackupAppliance.Era;
using BackupAppliance.Era.Dump;

namespace BackupAppliance.Cli.Commands.Era;

/// <summary><c>bapp era dump [--logical] [-o FILE] FILE</c>: era_dump 0.9.0's XML, byte for byte.</summary>
public static class EraDumpCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var file = new Argument<string>("file") { Description = "Era metadata file (or device)" };
        var logical = new Option<bool>("--logical") { Description = "Fold the writesets into the era array (0.9.0 keeps the oldest era of a block in several writesets)" };
        var output = new Option<string?>("--output", "-o") { Description = "Write the XML to this file instead of stdout" };
        var cmd = new Command("dump", "Print era metadata as XML (like era_dump)") { file, logical, output };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            using var reader = EraReader.Open(r.GetValue(file)!);
            EraOutput.Write(r.GetValue(output), stdout, w => EraDumper.Dump(reader, new EraXmlEmitter(w), r.GetValue(logical)));
            return 0;
        }));
        return cmd;
    }
}
