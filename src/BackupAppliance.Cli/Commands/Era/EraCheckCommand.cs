using System.CommandLine;
using BackupAppliance.Era.Check;

namespace BackupAppliance.Cli.Commands.Era;

/// <summary>
/// <c>bapp era check [-q] [--super-block-only] FILE</c>: what era_check 0.9.0 verifies; problems on
/// stderr, each naming its block; exit 1 when any is found.
/// </summary>
public static class EraCheckCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var file = new Argument<string>("file") { Description = "Era metadata file (or device)" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Print nothing; only the exit code tells" };
        var superblockOnly = new Option<bool>("--super-block-only") { Description = "Check the superblock only (era_check 0.9.0 accepts this flag but ignores it)" };
        var cmd = new Command("check", "Validate era metadata (like era_check)") { file, quiet, superblockOnly };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            var report = EraChecker.Check(r.GetValue(file)!, r.GetValue(superblockOnly));
            if (!r.GetValue(quiet))
            {
                stderr.WriteLine("examining superblock");
                foreach (var problem in report.Problems)
                    stderr.WriteLine("  " + problem);
                stderr.Flush();
            }
            return report.Passed ? 0 : 1;
        }));
        return cmd;
    }
}
