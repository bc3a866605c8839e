using System.CommandLine;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary><c>bapp pool create --pool DIR --data-size SIZE [--block-size 64K] [--metadata-size SIZE]</c></summary>
public static class PoolCreateCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var dataSize = SizeArgs.Option("--data-size", "Size of the data device", required: true);
        var blockSize = SizeArgs.Option("--block-size", "Data block size, a multiple of 64K up to 1G (default 64K)");
        var metaSize = SizeArgs.Option("--metadata-size", "Size of the metadata device (default: enough for the data size)");
        var errorIfNoSpace = new Option<bool>("--error-if-no-space") { Description = "Fail writes at once when data space runs out (default: wait for a resize)" };
        var timeout = new Option<double>("--no-space-timeout") { Description = "Seconds a write waits for space before failing", DefaultValueFactory = _ => 60 };
        var cmd = new Command("create", "Create a thin pool in a folder") { pool, dataSize, blockSize, metaSize, errorIfNoSpace, timeout };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            var settings = new PoolSettings
            {
                DataBlockSize = (int)(r.GetValue(blockSize) ?? 64 * 1024),
                ErrorIfNoSpace = r.GetValue(errorIfNoSpace),
                NoSpaceTimeoutSeconds = r.GetValue(timeout) is var t and >= 0 ? t : throw new ArgumentException("--no-space-timeout must be ≥ 0"),
            };
            using var p = ThinPool.Create(r.GetValue(pool)!, r.GetValue(dataSize)!.Value, settings, r.GetValue(metaSize));
            var s = p.Status();
            stdout.WriteLine($"created pool {p.Directory}: {s.DataBlocksTotal} data blocks of {SizeArgs.Human(s.DataBlockSize)} ({SizeArgs.Human((long)s.DataBlocksTotal * s.DataBlockSize)}), " +
                $"{s.MetadataBlocksTotal} metadata blocks ({SizeArgs.Human((long)s.MetadataBlocksTotal * 4096)})");
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
