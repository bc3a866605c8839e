using System.Buffers;
using System.CommandLine;
using BackupAppliance.Thin.Pool;
using Spectre.Console;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary><c>bapp vol export --pool DIR NAME --to IMAGE</c>: a sparse raw image; unprovisioned ranges stay holes.</summary>
public static class VolExportCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var name = PoolArgs.NameArgument();
        var to = new Option<string>("--to") { Description = "Raw image to write (created or replaced)", Required = true };
        var cmd = new Command("export", "Write a volume to a sparse raw image") { pool, name, to };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            using var p = ThinPool.Open(r.GetValue(pool)!, commitInterval: TimeSpan.Zero);
            var v = p.OpenVolume(r.GetValue(name)!);
            string image = r.GetValue(to)!;
            var extents = v.GetAllocationAsync(0, v.Size, CancellationToken.None).AsTask().GetAwaiter().GetResult();
            long data = extents.Where(e => !e.IsHole).Sum(e => e.Length);
            const int Chunk = 4 << 20;
            byte[] buf = ArrayPool<byte>.Shared.Rent(Chunk);
            try
            {
                using var output = File.OpenHandle(image, FileMode.Create, FileAccess.Write, FileShare.None);
                RandomAccess.SetLength(output, v.Size);
                ProgressConsole.Create(stderr).Progress().Start(ctx =>
                {
                    var task = ctx.AddTask($"exporting {v.Name}", maxValue: Math.Max(1, data));
                    foreach (var e in extents.Where(e => !e.IsHole))
                    {
                        for (long pos = e.Offset; pos < e.Offset + e.Length; pos += Chunk)
                        {
                            int n = (int)Math.Min(Chunk, e.Offset + e.Length - pos);
                            v.ReadAsync(pos, buf.AsMemory(0, n), CancellationToken.None).AsTask().GetAwaiter().GetResult();
                            RandomAccess.Write(output, buf.AsSpan(0, n), pos);
                            task.Increment(n);
                        }
                    }
                });
                RandomAccess.FlushToDisk(output);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buf);
            }
            stdout.WriteLine($"exported {v.Name} to {image}: {SizeArgs.Human(v.Size)}, {SizeArgs.Human(data)} of data (the rest left sparse)");
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
