using System.CommandLine;
using BackupAppliance.Thin.Pool;

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
            using var p = ThinPool.Open(r.GetValue(pool)!, commitInterval: TimeSpan.Zero);
            p.Resize(r.GetValue(dataSize), r.GetValue(metaSize));
            var s = p.Status();
            stdout.WriteLine($"pool {p.Directory}: {s.DataBlocksTotal} data blocks, {s.MetadataBlocksTotal} metadata blocks, mode {s.Mode.ToString().ToLowerInvariant()}");
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
