using System.CommandLine;
using System.Text.Json;
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
            using var p = ThinPool.Open(r.GetValue(pool)!, commitInterval: TimeSpan.Zero);
            var s = p.Status();
            if (r.GetValue(json))
            {
                stdout.WriteLine(JsonSerializer.Serialize(new
                {
                    mode = s.Mode.ToString(), needsCheck = s.NeedsCheck, transactionId = s.TransactionId,
                    dataBlockSize = s.DataBlockSize, dataBlocksUsed = s.DataBlocksUsed, dataBlocksTotal = s.DataBlocksTotal,
                    metadataBlocksUsed = s.MetadataBlocksUsed, metadataBlocksTotal = s.MetadataBlocksTotal,
                    belowLowWater = s.BelowLowWater, readOnlyReason = s.ReadOnlyReason, volumes = s.Volumes,
                }));
            }
            else
            {
                stdout.WriteLine($"pool:           {p.Directory}");
                stdout.WriteLine($"mode:           {s.Mode.ToString().ToLowerInvariant()}{(s.ReadOnlyReason is { } why ? $" ({why})" : "")}");
                stdout.WriteLine($"needs_check:    {(s.NeedsCheck ? "yes" : "no")}");
                stdout.WriteLine($"transaction:    {s.TransactionId}");
                stdout.WriteLine($"data:           {s.DataBlocksUsed}/{s.DataBlocksTotal} blocks of {SizeArgs.Human(s.DataBlockSize)} used ({Percent(s.DataBlocksUsed, s.DataBlocksTotal)})" +
                    (s.BelowLowWater ? $"  WARNING: below the low-water mark ({p.Settings.LowWaterPercent}% free); grow it with `bapp pool resize`" : ""));
                stdout.WriteLine($"metadata:       {s.MetadataBlocksUsed}/{s.MetadataBlocksTotal} blocks of 4 KiB used ({Percent(s.MetadataBlocksUsed, s.MetadataBlocksTotal)})");
                stdout.WriteLine($"volumes:        {s.Volumes}");
            }
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }

    private static string Percent(ulong used, ulong total) => total == 0 ? "-" : $"{used * 100.0 / total:0.#}%";
}
