using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using BackupAppliance.Agent;
using BackupAppliance.Core;
using BackupAppliance.Hosting;
using Spectre.Console;

namespace BackupAppliance.Cli.Commands.Backup;

/// <summary>
/// <c>bapp backup now VOLUME [--config FILE]</c>: asks the running agent to back the volume up now
/// and shows progress (bytes, rate, ETA) until the receiver has committed the point. Exit 0 only then.
/// </summary>
public static class BackupNowCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = ConfigArgs.Agent();
        var volume = new Argument<string>("VOLUME") { Description = "A volume the agent's configuration protects" };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON" };
        var cmd = new Command("now", "Back a volume up now through the running agent; returns when the receiver has committed the point") { volume, config, json };
        cmd.SetAction((r, ct) => CommandRunner.RunAsync(stderr, async () =>
        {
            var cfg = AgentConfig.Load(r.GetValue(config)!);
            string name = r.GetValue(volume)!;
            if (cfg.FindVolume(name) is null)
                throw new ArgumentException($"volume '{name}' is not in {cfg.File} (volumes: {string.Join(", ", cfg.Volumes.Select(v => v.Name))})");
            var request = new JsonObject { ["op"] = "backup", ["volume"] = name };
            var result = await RunWithProgressAsync(stderr, $"backup {name}", (onProgress, token) =>
                ControlClient.AskAsync(cfg.ControlSocketPath, request, onProgress, token), ct);
            if (r.GetValue(json))
            {
                stdout.WriteLine(result.ToJsonString());
            }
            else
            {
                long changed = result["changed_bytes"]!.GetValue<long>(), wire = result["wire_bytes"]!.GetValue<long>();
                double seconds = result["seconds"]!.GetValue<double>();
                stdout.WriteLine($"point {result["point"]} of {name} committed: {ByteSize.Human(changed)} changed, {ByteSize.Human(wire)} on the wire, {seconds:F1} s"
                    + (result["resumed"]!.GetValue<bool>() ? " (resumed an interrupted backup)" : ""));
            }
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// Runs a control request whose progress lines carry <c>done</c> and <c>total</c> bytes: live bars
    /// on a terminal, otherwise a plain line on stderr at most once a second (without loading the
    /// console library: it is the larger part of a short command's start-up when read cold).
    /// </summary>
    public static Task<JsonObject> RunWithProgressAsync(TextWriter stderr, string title,
        Func<Action<JsonObject>, CancellationToken, Task<JsonObject>> ask, CancellationToken cancellationToken) =>
        Console.IsErrorRedirected
            ? RunWithProgressLinesAsync(stderr, title, ask, cancellationToken)
            : RunWithProgressBarsAsync(stderr, title, ask, cancellationToken);

    private static Task<JsonObject> RunWithProgressLinesAsync(TextWriter stderr, string title,
        Func<Action<JsonObject>, CancellationToken, Task<JsonObject>> ask, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        long lastPrint = -1000;
        return ask(p =>
        {
            if (clock.ElapsedMilliseconds - lastPrint < 1000)
                return;
            lastPrint = clock.ElapsedMilliseconds;
            long done = p["done"]?.GetValue<long>() ?? 0, total = Math.Max(1, p["total"]?.GetValue<long>() ?? 1);
            double rate = done / Math.Max(0.001, clock.Elapsed.TotalSeconds);
            string eta = rate > 0 ? $", ETA {TimeSpan.FromSeconds((total - done) / rate):hh\\:mm\\:ss}" : "";
            stderr.WriteLine($"{title}: {100.0 * done / total:F0}% {ByteSize.Human(done)} of {ByteSize.Human(total)}, {ByteSize.Human((long)rate)}/s{eta}" + (p["phase"] is { } phase ? $" ({phase})" : ""));
        }, cancellationToken);
    }

    private static async Task<JsonObject> RunWithProgressBarsAsync(TextWriter stderr, string title,
        Func<Action<JsonObject>, CancellationToken, Task<JsonObject>> ask, CancellationToken cancellationToken)
    {
        JsonObject? result = null;
        await ProgressConsole.Create(stderr).Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask(title, maxValue: 1);
                result = await ask(p =>
                {
                    task.MaxValue = Math.Max(1, p["total"]?.GetValue<long>() ?? 1);
                    task.Value = p["done"]?.GetValue<long>() ?? 0;
                }, cancellationToken);
                task.Value = task.MaxValue;
            });
        return result!;
    }
}
