using System.CommandLine;
using BackupAppliance.Thin;
using BackupAppliance.Thin.Exercise;

namespace BackupAppliance.Cli.Commands;

/// <summary>
/// Hidden <c>bapp thin exercise</c>: formats a metadata file and runs a seeded workload, printing
/// "committed N" after each durable commit. The crash tests kill it with SIGKILL at random moments.
/// </summary>
public static class ThinExerciseCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var file = new Argument<string>("file") { Description = "Metadata file (created, 32 MiB)" };
        var seed = new Option<int>("--seed") { Description = "Workload seed", Required = true };
        var steps = new Option<int>("--steps") { Description = "Transactions to run", DefaultValueFactory = _ => 1000 };
        var cmd = new Command("exercise", "Run a seeded metadata workload, committing after each step") { file, seed, steps };
        cmd.Hidden = true;
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            string path = r.GetValue(file)!;
            using (var f = new FileStream(path, FileMode.Create))
                f.SetLength(32L << 20);
            using var md = ThinMetadata.Create(path, 128, 200_000);
            var w = new MetadataWorkload(r.GetValue(seed));
            stdout.WriteLine("committed 0");
            stdout.Flush();
            for (int i = 0; i < r.GetValue(steps); i++)
            {
                ulong t = w.Step(md);
                stdout.WriteLine($"committed {t}");
                stdout.Flush();
            }
            return 0;
        }));
        return cmd;
    }
}
