using System.CommandLine;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary><c>bapp vol snapshot --pool DIR NAME SNAPNAME</c>: O(1), shares every block, read-only.</summary>
public static class VolSnapshotCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var name = PoolArgs.NameArgument();
        var snap = PoolArgs.NameArgument("snapname", "Name of the new snapshot");
        var cmd = new Command("snapshot", "Take a read-only snapshot of a volume (O(1), shares all blocks)") { pool, name, snap };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            using var p = ThinPool.Open(r.GetValue(pool)!, commitInterval: TimeSpan.Zero);
            var v = p.Snapshot(r.GetValue(name)!, r.GetValue(snap)!);
            stdout.WriteLine($"snapshot {v.Name} of {r.GetValue(name)} (thin device {v.Entry.DeviceId})");
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
