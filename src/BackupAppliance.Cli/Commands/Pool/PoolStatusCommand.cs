using System.CommandLine;
using System.Text.Json.Nodes;
using ServeControl = BackupAppliance.Cli.Commands.Serve.PoolControl;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary><c>bapp pool status --pool DIR [--json]</c></summary>
public static class PoolStatusCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var json = new Option<bool>("--json") { Description = "Machine-readable output" };
        var cmd = new Command("status", "Data and metadata use, mode, needs_check, transaction id") { pool, json };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            string dir = r.GetValue(pool)!;
            // A pool in use answers on its control socket; a closed one is opened here.
            var status = ServeControl.Ask(dir, new JsonObject { ["op"] = "status" });
            if (status is null)
            {
                using var p = ThinPool.Open(dir, commitInterval: TimeSpan.Zero);
                status = JsonNode.Parse(ServeControl.StatusJson(p))!.AsObject();
            }
            if (r.GetValue(json))
            {
                stdout.WriteLine(status.ToJsonString());
            }
            else
            {
                ulong U(string k) => status[k]!.GetValue<ulong>();
                string? why = status["readOnlyReason"]?.GetValue<string>();
                stdout.WriteLine($"pool:           {Path.GetFullPath(dir)}{(status["servedBy"] is { } pid ? $" (in use by process {pid})" : "")}");
                stdout.WriteLine($"mode:           {ModeName(status["mode"]!.GetValue<string>())}{(why is not null ? $" ({why})" : "")}");
                stdout.WriteLine($"needs_check:    {(status["needsCheck"]!.GetValue<bool>() ? "yes" : "no")}");
                stdout.WriteLine($"transaction:    {U("transactionId")}");
                stdout.WriteLine($"data:           {U("dataBlocksUsed")}/{U("dataBlocksTotal")} blocks of {SizeArgs.Human((long)U("dataBlockSize"))} used ({Percent(U("dataBlocksUsed"), U("dataBlocksTotal"))})" +
                    (status["belowLowWater"]!.GetValue<bool>() ? $"  WARNING: below the low-water mark ({status["lowWaterPercent"]}% free); grow it with `bapp pool resize`" : ""));
                stdout.WriteLine($"metadata:       {U("metadataBlocksUsed")}/{U("metadataBlocksTotal")} blocks of 4 KiB used ({Percent(U("metadataBlocksUsed"), U("metadataBlocksTotal"))})");
                stdout.WriteLine($"volumes:        {U("volumes")}");
            }
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }

    /// <summary>dm-thin's words for the modes: write, out-of-data-space, read-only.</summary>
    public static string ModeName(string mode) => mode switch
    {
        nameof(PoolMode.Write) => "write",
        nameof(PoolMode.OutOfDataSpace) => "out-of-data-space",
        nameof(PoolMode.ReadOnly) => "read-only",
        _ => mode,
    };

    private static string Percent(ulong used, ulong total) => total == 0 ? "-" : $"{used * 100.0 / total:0.#}%";
}
