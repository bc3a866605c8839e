using System.CommandLine;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary><c>bapp pool check --pool DIR</c>: metadata check plus catalogue consistency; clears needs_check when clean.</summary>
public static class PoolCheckCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var cmd = new Command("check", "Check the pool's metadata and catalogue (the pool must not be in use)") { pool };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            var result = PoolChecker.Check(r.GetValue(pool)!);
            foreach (var stage in result.Metadata.Stages)
            {
                stderr.WriteLine(stage.Title);
                foreach (var problem in stage.Problems)
                    stderr.WriteLine($"  {problem.Message}");
            }
            foreach (var problem in result.CatalogueProblems)
                stderr.WriteLine($"  {problem}");
            if (result.ClearedNeedsCheck)
                stdout.WriteLine("needs_check was set and is now cleared: the pool can go back to write mode");
            stdout.WriteLine(result.IsValid ? "pool is consistent" : "pool has problems (see above)");
            stdout.Flush();
            return result.IsValid ? 0 : 1;
        }));
        return cmd;
    }
}
