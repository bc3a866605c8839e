using System.CommandLine;
using BackupAppliance.ChangeTracking;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary><c>bapp vol delete --pool DIR NAME</c>: frees what no other volume shares.</summary>
public static class VolDeleteCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var name = PoolArgs.NameArgument();
        var cmd = new Command("delete", "Delete a volume or snapshot") { pool, name };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            using var p = TrackedPool.Open(r.GetValue(pool)!, commitInterval: TimeSpan.Zero);
            ulong before = p.Pool.Status().DataBlocksUsed;
            p.DeleteVolume(r.GetValue(name)!);
            ulong after = p.Pool.Status().DataBlocksUsed;
            stdout.WriteLine($"deleted {r.GetValue(name)}; {before - after} data blocks freed ({SizeArgs.Human((long)(before - after) * p.Pool.DataBlockSize)})");
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
