using System.CommandLine;
using BackupAppliance.Thin.Check;

namespace BackupAppliance.Cli.Commands;

/// <summary>
/// <c>bapp thin check</c>: thin_check's interface — progress and problems on stderr (each problem
/// indented under its stage), TRANSACTION_ID/METADATA_FREE_BLOCKS on stdout, exit 0 only when nothing
/// at all was found.
/// </summary>
public static class ThinCheckCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var file = new Argument<string>("file") { Description = "Metadata file (or device)" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Print nothing; only the exit code tells" };
        var snap = MetadataSnapArgs.CreateFlag();
        var snapBlock = MetadataSnapArgs.CreateBlock();
        var cmd = new Command("check", "Validate thin metadata: everything thin_check checks, plus data reference counts and device consistency");
        cmd.Arguments.Add(file);
        cmd.Options.Add(quiet);
        cmd.Options.Add(snap);
        cmd.Options.Add(snapBlock);
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            ulong? block = r.GetValue(snapBlock);
            var report = ThinChecker.Check(r.GetValue(file)!, r.GetValue(snap) || block is not null, block);
            if (!r.GetValue(quiet))
                Print(report, stdout, stderr);
            return report.ExitCode;
        }));
        return cmd;
    }

    private static void Print(ThinCheckReport report, TextWriter stdout, TextWriter stderr)
    {
        foreach (var stage in report.Stages)
        {
            stderr.WriteLine(stage.Title);
            foreach (var problem in stage.Problems)
                stderr.WriteLine("  " + problem.Message);
        }
        if (report.TransactionId is ulong tid)
            stdout.WriteLine($"TRANSACTION_ID={tid}");
        if (report.MetadataFreeBlocks is ulong free)
            stdout.WriteLine($"METADATA_FREE_BLOCKS={free}");
        stdout.Flush();
        stderr.Flush();
    }
}
