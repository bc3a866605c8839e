using System.CommandLine;
using System.Text.Json.Nodes;
using BackupAppliance.Core;
using BackupAppliance.Hosting;
using BackupAppliance.Receiver;

namespace BackupAppliance.Cli.Commands.Backup;

/// <summary><c>bapp backup list VOLUME [--agent NAME] [--config FILE] [--json]</c>: the receiver's points of a volume, oldest first.</summary>
public static class BackupListCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = ConfigArgs.Receiver();
        var volume = new Argument<string>("VOLUME") { Description = "The protected volume's name" };
        var agent = new Option<string?>("--agent") { Description = "The agent that backs it up (needed only when several agents have a volume of that name)" };
        var json = new Option<bool>("--json") { Description = "Print JSON: {agent, volume, points: [...], staging}" };
        var cmd = new Command("list", "List the receiver's backup points of a volume (time, size, changed bytes)") { volume, agent, config, json };
        cmd.SetAction((r, ct) => CommandRunner.RunAsync(stderr, async () =>
        {
            var cfg = ReceiverConfig.Load(r.GetValue(config)!);
            var request = new JsonObject { ["op"] = "list", ["volume"] = r.GetValue(volume), ["agent"] = r.GetValue(agent) };
            var reply = await ReceiverControl.AskAsync(cfg, request, null, ct);
            if (r.GetValue(json))
            {
                stdout.WriteLine(reply.ToJsonString());
                return 0;
            }
            var points = reply["points"]!.AsArray();
            stdout.WriteLine($"{"POINT",-20} {"CREATED (UTC)",-20} {"SIZE",10} {"CHANGED",10}  BASE");
            foreach (var p in points)
            {
                var created = DateTimeOffset.Parse(p!["created"]!.GetValue<string>(), System.Globalization.CultureInfo.InvariantCulture);
                stdout.WriteLine($"{p["point"],-20} {created.UtcDateTime:yyyy-MM-dd HH:mm:ss} {ByteSize.Human(p["size"]!.GetValue<long>()),10} {ByteSize.Human(p["changed_bytes"]!.GetValue<long>()),10}  {p["base"]?.GetValue<string>() ?? "(full)"}");
            }
            stdout.WriteLine($"{points.Count} point(s) of {reply["agent"]}/{reply["volume"]}" + (reply["staging"] is JsonObject s ? $"; a backup of {s["target"]} is being received" : ""));
            return 0;
        }));
        return cmd;
    }
}
