using System.CommandLine;
using System.Text.Json.Nodes;
using BackupAppliance.Thin.Pool;
using ServeControl = BackupAppliance.Cli.Commands.Serve.PoolControl;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary><c>bapp pool resize --pool DIR [--data-size SIZE] [--metadata-size SIZE]</c> (grow only).</summary>
public static class PoolResizeCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var dataSize = SizeArgs.Option("--data-size", "New size of the data device");
        var metaSize = SizeArgs.Option("--metadata-size", "New size of the metadata device");
        var cmd = new Command("resize", "Grow the data or metadata device; returns a full pool to write mode") { pool, dataSize, metaSize };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            if (r.GetValue(dataSize) is null && r.GetValue(metaSize) is null)
                throw new ArgumentException("give --data-size, --metadata-size or both");
            string dir = r.GetValue(pool)!;
            // A served pool is resized by the serving process, which wakes writes waiting for space.
            var served = ServeControl.Ask(dir, new JsonObject { ["op"] = "resize", ["dataSize"] = r.GetValue(dataSize), ["metadataSize"] = r.GetValue(metaSize) });
            if (served is not null)
            {
                stdout.WriteLine($"pool {Path.GetFullPath(dir)} (in use by process {served["servedBy"]}): {served["dataBlocksTotal"]} data blocks, {served["metadataBlocksTotal"]} metadata blocks, mode {PoolStatusCommand.ModeName(served["mode"]!.GetValue<string>())}");
                stdout.Flush();
                return 0;
            }
            using var p = ThinPool.Open(dir, commitInterval: TimeSpan.Zero);
            p.Resize(r.GetValue(dataSize), r.GetValue(metaSize));
            var s = p.Status();
            stdout.WriteLine($"pool {p.Directory}: {s.DataBlocksTotal} data blocks, {s.MetadataBlocksTotal} metadata blocks, mode {PoolStatusCommand.ModeName(s.Mode.ToString())}");
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
