using System.CommandLine;
using BackupAppliance.Thin.Pool;

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
            using var p = ThinPool.Open(r.GetValue(pool)!, commitInterval: TimeSpan.Zero);
            ulong before = p.Status().DataBlocksUsed;
            p.DeleteVolume(r.GetValue(name)!);
            ulong after = p.Status().DataBlocksUsed;
            stdout.WriteLine($"deleted {r.GetValue(name)}; {before - after} data blocks freed ({SizeArgs.Human((long)(before - after) * p.DataBlockSize)})");
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
