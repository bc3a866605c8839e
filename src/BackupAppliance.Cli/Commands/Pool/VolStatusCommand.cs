using System.CommandLine;
using System.Text.Json.Nodes;
using BackupAppliance.ChangeTracking;
using BackupAppliance.Cli.Commands.Serve;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary><c>bapp vol status --pool DIR NAME [--json]</c>: a volume's size, era tracking and snapshots.</summary>
public static class VolStatusCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var name = PoolArgs.NameArgument();
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("status", "Show a volume's change tracking: current era, era metadata file, snapshots") { pool, name, json };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            string dir = r.GetValue(pool)!, volume = r.GetValue(name)!;
            var o = PoolControl.Ask(dir, new JsonObject { ["op"] = "volume-status", ["volume"] = volume });
            if (o is null)
            {
                using var p = TrackedPool.Open(dir, commitInterval: TimeSpan.Zero);
                o = VolumeJson.Status(p.Status(volume));
            }
            if (r.GetValue(json))
                stdout.WriteLine(o.ToJsonString());
            else
            {
                stdout.WriteLine($"volume {o["name"]}: {SizeArgs.Human(o["size"]!.GetValue<long>())}, thin device {o["deviceId"]}, " +
                    $"{SizeArgs.Human(o["blockSize"]!.GetValue<int>())} blocks{(o["readOnly"]!.GetValue<bool>() ? ", read-only snapshot (not tracked)" : "")}");
                if (o["eraFile"] is { } file)
                    stdout.WriteLine($"era tracking: {file}, current era {o["currentEra"]}, undigested writesets of eras [{string.Join(", ", o["undigestedEras"]!.AsArray())}]");
                foreach (var x in o["snapshots"]!.AsArray())
                    stdout.WriteLine($"snapshot {x!["name"]} (device {x["deviceId"]}){(x["era"] is { } e ? $": changes since it are era {e} and later" : "")}");
            }
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
