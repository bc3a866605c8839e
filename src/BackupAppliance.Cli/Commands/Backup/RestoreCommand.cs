using System.CommandLine;
using System.Text.Json.Nodes;
using BackupAppliance.Core;
using BackupAppliance.Receiver;

namespace BackupAppliance.Cli.Commands.Backup;

/// <summary>
/// <c>bapp restore VOLUME@POINT --to IMAGE [--agent NAME] [--force] [--config FILE]</c>: writes a
/// backup point to a sparse image file on the receiver's host (POINT may be <c>latest</c>).
/// </summary>
public static class RestoreCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = ConfigArgs.Receiver();
        var what = new Argument<string>("VOLUME@POINT") { Description = "The volume and the point to restore (POINT from `bapp backup list`, or latest)" };
        var to = new Option<string>("--to") { Description = "The image file to write (sparse)", Required = true };
        var agent = new Option<string?>("--agent") { Description = "The agent that backs the volume up (needed only when several agents have a volume of that name)" };
        var force = new Option<bool>("--force") { Description = "Overwrite IMAGE if it exists" };
        var cmd = new Command("restore", "Write a backup point to a sparse image file (full restore)") { what, to, agent, force, config };
        cmd.SetAction((r, ct) => CommandRunner.RunAsync(stderr, async () =>
        {
            string spec = r.GetValue(what)!;
            int at = spec.LastIndexOf('@');
            if (at <= 0 || at == spec.Length - 1)
                throw new ArgumentException($"'{spec}' is not VOLUME@POINT (for example disk@latest or disk@20261121T101500Z)");
            var cfg = ReceiverConfig.Load(r.GetValue(config)!);
            string image = Path.GetFullPath(r.GetValue(to)!);
            var request = new JsonObject
            {
                ["op"] = "restore", ["volume"] = spec[..at], ["point"] = spec[(at + 1)..], ["agent"] = r.GetValue(agent),
                ["to"] = image, ["overwrite"] = r.GetValue(force),
            };
            var reply = await BackupNowCommand.RunWithProgressAsync(stderr, $"restore {spec}", (onProgress, token) =>
                ReceiverControl.AskAsync(cfg, request, onProgress, token), ct);
            stdout.WriteLine($"restored {reply["agent"]}/{reply["volume"]}@{reply["point"]} to {image}: {ByteSize.Human(reply["size"]!.GetValue<long>())}, digest {reply["digest"]!.GetValue<string>()[..16]}…");
            return 0;
        }));
        return cmd;
    }
}
