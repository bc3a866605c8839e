using System.CommandLine;
using System.Text.Json.Nodes;
using BackupAppliance.ChangeTracking;
using BackupAppliance.Cli.Commands.Serve;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary>
/// <c>bapp vol changes --pool DIR NAME (--since-era N | --since-snapshot SNAP) [--as-of SNAP] [--json]</c>:
/// the changed-block set a backup reads: extents of changed data and of blocks now unmapped. A pool
/// being served answers through its control socket.
/// </summary>
public static class VolChangesCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var name = PoolArgs.NameArgument();
        var sinceEra = new Option<uint?>("--since-era") { Description = "Blocks written in this era or later (dm-era; needs no old snapshot)" };
        var sinceSnap = new Option<string?>("--since-snapshot") { Description = "Changes against this older snapshot of the volume (changes-only btree diff)" };
        var asOf = new Option<string?>("--as-of") { Description = "With --since-era: classify by this snapshot's mapping instead of the live volume's" };
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("changes", "List the extents of a volume that changed since an era or a snapshot") { pool, name, sinceEra, sinceSnap, asOf, json };
        cmd.Validators.Add(r =>
        {
            bool era = r.GetValue(sinceEra) is not null, snap = r.GetValue(sinceSnap) is not null;
            if (era == snap)
                r.AddError("give exactly one of --since-era N and --since-snapshot SNAP");
            if (snap && r.GetValue(asOf) is not null)
                r.AddError("--as-of goes with --since-era only");
        });
        cmd.SetAction((r, ct) => CommandRunner.RunAsync(stderr, async () =>
        {
            string dir = r.GetValue(pool)!, volume = r.GetValue(name)!;
            var request = new JsonObject { ["op"] = "changes", ["volume"] = volume, ["sinceEra"] = r.GetValue(sinceEra), ["sinceSnapshot"] = r.GetValue(sinceSnap), ["asOf"] = r.GetValue(asOf) };
            ChangeSet set;
            if (PoolControl.Ask(dir, request) is { } served)
                set = VolumeJson.ParseChanges(served);
            else
            {
                await using var p = TrackedPool.Open(dir, commitInterval: TimeSpan.Zero);
                set = r.GetValue(sinceEra) is { } era
                    ? await p.ChangesSinceEraAsync(volume, era, r.GetValue(asOf), ct)
                    : p.ChangesSinceSnapshot(volume, r.GetValue(sinceSnap)!);
            }
            if (r.GetValue(json))
                stdout.WriteLine(VolumeJson.Changes(set).ToJsonString());
            else
            {
                stdout.WriteLine($"{"OFFSET",16} {"LENGTH",14}  KIND");
                foreach (var e in set.Extents)
                    stdout.WriteLine($"{e.Offset,16} {e.Length,14}  {(e.IsHole ? "unmapped" : "data")}");
                stdout.WriteLine($"{set.Extents.Count} extents: {SizeArgs.Human(set.DataBytes)} of data, {SizeArgs.Human(set.UnmappedBytes)} unmapped");
            }
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
