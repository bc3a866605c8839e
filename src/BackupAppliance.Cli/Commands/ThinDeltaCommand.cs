using System.CommandLine;
using BackupAppliance.Thin;
using BackupAppliance.Thin.Delta;

namespace BackupAppliance.Cli.Commands;

/// <summary><c>bapp thin delta</c>: thin_delta's output byte for byte, plus a changes-only mode.</summary>
public static class ThinDeltaCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var file = new Argument<string>("file") { Description = "Metadata file (or device)" };
        var snap1 = NumberArgs.UnsignedOption("--snap1", "Left device id", "--thin1");
        var snap2 = NumberArgs.UnsignedOption("--snap2", "Right device id", "--thin2");
        var verbose = new Option<bool>("--verbose") { Description = "Group ranges and show data blocks" };
        var changesOnly = new Option<bool>("--changes-only")
        {
            Description = "Print only different/left_only/right_only, skipping subtrees both devices share (fast)",
        };
        var stats = new Option<bool>("--stats") { Description = "Print the walk's time and the metadata blocks it read to stderr" };
        var snap = MetadataSnapArgs.CreateFlag();
        var snapBlock = MetadataSnapArgs.CreateBlock();
        var cmd = new Command("delta", "Print the differences between two thin devices (like thin_delta)")
            { file, snap1, snap2, verbose, changesOnly, stats, snap, snapBlock };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            ulong s1 = r.GetValue(snap1) ?? throw new ArgumentException("--snap1 not specified.");
            ulong s2 = r.GetValue(snap2) ?? throw new ArgumentException("--snap2 not specified.");
            using var reader = ThinReader.Open(r.GetValue(file)!, r.GetValue(snap) || r.GetValue(snapBlock) is not null, r.GetValue(snapBlock));
            // Both devices are looked up before anything is written, so an error leaves stdout empty.
            var sw = System.Diagnostics.Stopwatch.StartNew();
            DeltaXml.Write(reader, s1, s2, r.GetValue(verbose), r.GetValue(changesOnly), stdout);
            stdout.Flush();
            if (r.GetValue(stats))
            {
                var (blocks, calls) = reader.ReadStats;
                stderr.WriteLine($"delta: {sw.Elapsed.TotalMilliseconds:F1} ms in the library, {blocks} metadata blocks read in {calls} read calls");
            }
            return 0;
        }));
        return cmd;
    }
}
