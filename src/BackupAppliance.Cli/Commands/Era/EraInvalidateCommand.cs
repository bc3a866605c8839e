using System.CommandLine;
using BackupAppliance.Era;
using BackupAppliance.Era.Invalidate;

namespace BackupAppliance.Cli.Commands.Era;

/// <summary>
/// <c>bapp era invalidate --written-since N [--metadata-snapshot] [-o FILE] FILE</c>: era_invalidate
/// 0.9.0's block list, byte for byte (its quirks included). Nothing is printed when it fails.
/// </summary>
public static class EraInvalidateCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var file = new Argument<string>("file") { Description = "Era metadata file (or device)" };
        var since = NumberArgs.UnsignedOption("--written-since", "The era: blocks written in it or later are listed");
        var snapshot = new Option<bool>("--metadata-snapshot") { Description = "Require a metadata snapshot (0.9.0 still reads the live trees)" };
        var output = new Option<string?>("--output", "-o") { Description = "Write the XML to this file instead of stdout" };
        var cmd = new Command("invalidate", "List the blocks written since an era (like era_invalidate)") { file, since, snapshot, output };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            ulong era = r.GetValue(since) ?? throw new ArgumentException("Please specify --written-since");
            if (era > uint.MaxValue)
                throw new ArgumentException($"--written-since {era} is beyond the 32-bit era counter");
            using var reader = EraReader.Open(r.GetValue(file)!);
            var blocks = EraInvalidator.WrittenSince(reader, (uint)era, r.GetValue(snapshot));
            EraOutput.Write(r.GetValue(output), stdout, w => EraInvalidator.Emit(blocks, w));
            return 0;
        }));
        return cmd;
    }
}
