using System.CommandLine;
using BackupAppliance.Thin;
using BackupAppliance.Thin.Dump;

namespace BackupAppliance.Cli.Commands;

/// <summary><c>bapp thin dump</c>: thin_dump's output, byte for byte.</summary>
public static class ThinDumpCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var file = new Argument<string>("file") { Description = "Metadata file (or device)" };
        var format = new Option<string>("--format", "-f") { Description = "xml or human_readable", DefaultValueFactory = _ => "xml" };
        var output = new Option<string?>("--output", "-o") { Description = "Write to this file instead of stdout" };
        var devId = NumberArgs.UnsignedOption("--dev-id", "Device id to dump alone");
        var snap = MetadataSnapArgs.CreateFlag();
        var snapBlock = MetadataSnapArgs.CreateBlock();
        var cmd = new Command("dump", "Print thin metadata as XML (like thin_dump)") { file, format, output, devId, snap, snapBlock };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            string fmt = r.GetValue(format)!;
            if (fmt is not ("xml" or "human_readable"))
                throw new ArgumentException($"unknown format '{fmt}' (xml or human_readable)");
            using var reader = ThinReader.Open(r.GetValue(file)!, r.GetValue(snap) || r.GetValue(snapBlock) is not null, r.GetValue(snapBlock));
            string? outPath = r.GetValue(output);
            using var fileOut = outPath is null ? null : new StreamWriter(outPath) { NewLine = "\n" };
            var w = fileOut ?? stdout;
            IMetadataVisitor emitter = fmt == "xml" ? new XmlEmitter(w) : new HumanReadableEmitter(w);
            ThinDumper.Dump(reader, emitter, r.GetValue(devId));
            w.Flush();
            return 0;
        }));
        return cmd;
    }
}
