using System.CommandLine;
using System.Text.Json.Nodes;
using BackupAppliance.ChangeTracking;
using BackupAppliance.Cli.Commands.Serve;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary>
/// <c>bapp vol snapshot --pool DIR NAME SNAPNAME</c>: O(1), shares every block, read-only; taken at an
/// era checkpoint. A pool being served takes it through its control socket, writes held back meanwhile.
/// </summary>
public static class VolSnapshotCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var name = PoolArgs.NameArgument();
        var snap = PoolArgs.NameArgument("snapname", "Name of the new snapshot");
        var cmd = new Command("snapshot", "Take a read-only snapshot of a volume (O(1), shares all blocks)") { pool, name, snap };
        cmd.SetAction((r, ct) => CommandRunner.RunAsync(stderr, async () =>
        {
            string dir = r.GetValue(pool)!, volume = r.GetValue(name)!, snapName = r.GetValue(snap)!;
            ulong deviceId;
            ulong? era;
            if (PoolControl.Ask(dir, new JsonObject { ["op"] = "snapshot", ["volume"] = volume, ["snapshot"] = snapName }) is { } served)
                (deviceId, era) = (served["deviceId"]!.GetValue<ulong>(), served["era"]?.GetValue<ulong>());
            else
            {
                await using var p = TrackedPool.Open(dir, commitInterval: TimeSpan.Zero);
                var v = await p.SnapshotAsync(volume, snapName, ct);
                (deviceId, era) = (v.DeviceId, v.ChangeEpoch);
            }
            stdout.WriteLine($"snapshot {snapName} of {volume} (thin device {deviceId}" + (era is { } e ? $", changes since it are era {e} and later)" : ")"));
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
