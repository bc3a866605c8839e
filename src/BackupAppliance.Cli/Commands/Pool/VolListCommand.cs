using System.CommandLine;
using System.Text.Json;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary><c>bapp vol list --pool DIR [--json]</c></summary>
public static class VolListCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("list", "List the pool's volumes and snapshots") { pool, json };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            using var p = ThinPool.Open(r.GetValue(pool)!, commitInterval: TimeSpan.Zero);
            var rows = p.Volumes.Select(v => new
            {
                name = v.Name, deviceId = v.DeviceId, size = v.Size, readOnly = v.ReadOnly, snapshotOf = v.SnapshotOf,
                origin = v.Origin, mappedBytes = (long)p.MappedBlocks(v) * p.DataBlockSize, created = v.Created,
            }).ToList();
            if (r.GetValue(json))
            {
                stdout.WriteLine(JsonSerializer.Serialize(rows));
            }
            else
            {
                stdout.WriteLine($"{"NAME",-24} {"DEV",5} {"SIZE",12} {"MAPPED",12}  KIND");
                foreach (var v in rows)
                    stdout.WriteLine($"{v.name,-24} {v.deviceId,5} {SizeArgs.Human(v.size),12} {SizeArgs.Human(v.mappedBytes),12}  " +
                        (v.snapshotOf is { } of ? $"snapshot of {of} (read-only)" : v.origin is { } o ? $"volume, origin {o}" : "volume"));
            }
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
