using System.CommandLine;
using BackupAppliance.ChangeTracking;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary><c>bapp vol create --pool DIR NAME --size SIZE [--origin IMAGE]</c></summary>
public static class VolCreateCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var name = PoolArgs.NameArgument();
        var size = SizeArgs.Option("--size", "Virtual size", required: true);
        var origin = new Option<string?>("--origin") { Description = "External origin: a read-only image that unwritten blocks read from" };
        var cmd = new Command("create", "Create a thin volume") { pool, name, size, origin };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            using var p = TrackedPool.Open(r.GetValue(pool)!, commitInterval: TimeSpan.Zero);
            var v = p.CreateVolume(r.GetValue(name)!, r.GetValue(size)!.Value, r.GetValue(origin));
            var e = p.Entry(v.Name);
            stdout.WriteLine($"created volume {v.Name} ({SizeArgs.Human(v.Size)}, thin device {e.DeviceId}, era tracking in {p.EraFile(e)})");
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
