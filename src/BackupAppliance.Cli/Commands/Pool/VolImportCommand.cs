using System.Buffers;
using System.CommandLine;
using BackupAppliance.ChangeTracking;
using Spectre.Console;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary><c>bapp vol import --pool DIR NAME --from IMAGE</c>: a new volume with the image's bytes; all-zero blocks stay unprovisioned.</summary>
public static class VolImportCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = PoolArgs.PoolOption();
        var name = PoolArgs.NameArgument();
        var from = new Option<string>("--from") { Description = "Raw image to import", Required = true };
        var cmd = new Command("import", "Create a volume from a raw image (zero blocks are skipped)") { pool, name, from };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            string image = r.GetValue(from)!;
            if (!File.Exists(image))
                throw new FileNotFoundException($"image {image} does not exist");
            long size = new FileInfo(image).Length;
            if (size == 0)
                throw new ArgumentException($"image {image} is empty");
            using var p = TrackedPool.Open(r.GetValue(pool)!);
            var v = p.CreateVolume(r.GetValue(name)!, size);
            int bs = v.BlockSize;
            long written = 0;
            using var input = File.OpenHandle(image, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.SequentialScan);
            byte[] buf = ArrayPool<byte>.Shared.Rent(bs);
            try
            {
                ProgressConsole.Create(stderr).Progress().Start(ctx =>
                {
                    var task = ctx.AddTask($"importing {Path.GetFileName(image)}", maxValue: size);
                    for (long pos = 0; pos < size; pos += bs)
                    {
                        int n = (int)Math.Min(bs, size - pos);
                        int got = RandomAccess.Read(input, buf.AsSpan(0, n), pos);
                        if (got != n)
                            throw new IOException($"short read from {image} at {pos}");
                        if (buf.AsSpan(0, n).ContainsAnyExcept((byte)0))
                        {
                            v.WriteAsync(pos, buf.AsMemory(0, n), fua: false, CancellationToken.None).AsTask().GetAwaiter().GetResult();
                            written += n;
                        }
                        task.Value = pos + n;
                    }
                });
                v.FlushAsync(CancellationToken.None).AsTask().GetAwaiter().GetResult();
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buf);
            }
            stdout.WriteLine($"imported {image} into {v.Name}: {SizeArgs.Human(size)}, {SizeArgs.Human(written)} provisioned (zero blocks skipped)");
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
