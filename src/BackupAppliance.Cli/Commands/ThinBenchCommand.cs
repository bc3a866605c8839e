using System.CommandLine;
using BackupAppliance.Thin;
using Spectre.Console;

namespace BackupAppliance.Cli.Commands;

/// <summary>
/// Hidden <c>bapp thin bench-make FILE --mappings N --change-percent P [--seed S]</c>: the input of
/// ops/bench/thin-delta.sh. Formats FILE, writes device 0 with N mappings (sequential virtual blocks,
/// freshly allocated data blocks), commits, snapshots it as device 1 (so the two share every mapping
/// subtree), then overwrites P% of device 0's blocks, chosen at random and distinct, with new data
/// blocks, and commits. Progress goes to stderr.
/// </summary>
public static class ThinBenchCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var file = new Argument<string>("file") { Description = "Metadata file (created or truncated; sized for the mappings, sparse)" };
        var mappings = new Option<long>("--mappings") { Description = "Mappings of device 0", DefaultValueFactory = _ => 4_000_000 };
        var changePercent = new Option<double>("--change-percent") { Description = "Percent of device 0's blocks rewritten after the snapshot", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<int>("--seed") { Description = "Seed of the random choice of rewritten blocks", DefaultValueFactory = _ => 42 };
        var run = new Option<int>("--run-length")
        {
            Description = "Rewritten blocks come in runs of this many consecutive blocks (1 = uniformly random; larger is how filesystems write)",
            DefaultValueFactory = _ => 1,
        };
        var cmd = new Command("bench-make", "Make a metadata file for delta benchmarks: device 0, its snapshot 1, then changes to 0")
            { file, mappings, changePercent, seed, run };
        cmd.Hidden = true;
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            string path = r.GetValue(file)!;
            long n = r.GetValue(mappings);
            double pct = r.GetValue(changePercent);
            if (n < 1 || n > 100_000_000)
                throw new ArgumentException("--mappings must be between 1 and 100000000");
            if (pct < 0 || pct > 100)
                throw new ArgumentException("--change-percent must be between 0 and 100");
            long changes = (long)Math.Round(n * pct / 100.0);

            // Sequential inserts leave leaves half full (126 of 252 entries): ~65 bytes of metadata per
            // mapping for the origin, up to as much again for the shadowed leaves; 128 bytes a mapping
            // leaves room. The kernel caps metadata at 4,161,600 blocks (~15.9 GiB).
            long bytes = Math.Clamp(n * 128, 64L << 20, 4_161_600L * 4096);
            using (var f = new FileStream(path, FileMode.Create))
                f.SetLength(bytes);
            var console = ProgressConsole.Create(stderr);

            using var md = ThinMetadata.Create(path, dataBlockSize: 128, nrDataBlocks: (ulong)(n + changes));
            md.CreateThin(0);
            console.Progress().Start(ctx =>
            {
                var write = ctx.AddTask("device 0: mapping blocks", maxValue: n);
                for (long v = 0; v < n; v++)
                {
                    md.Insert(0, (ulong)v, md.AllocateDataBlock());
                    if ((v & 0xFFFF) == 0)
                        write.Value = v;
                }
                write.Value = n;
                md.Commit();
                md.CreateSnapshot(1, 0);
                md.Commit();

                var change = ctx.AddTask($"device 0: rewriting {changes} blocks", maxValue: Math.Max(1, changes));
                var rng = new Random(r.GetValue(seed));
                var chosen = new HashSet<long>();
                int runLength = Math.Max(1, r.GetValue(run));
                while (chosen.Count < changes)
                {
                    long start = rng.NextInt64(n);
                    for (long v = start; v < Math.Min(n, start + runLength) && chosen.Count < changes; v++)
                    {
                        if (!chosen.Add(v))
                            continue;
                        md.Insert(0, (ulong)v, md.AllocateDataBlock());
                        if ((chosen.Count & 0xFFF) == 0)
                            change.Value = chosen.Count;
                    }
                }
                change.Value = Math.Max(1, changes);
                md.Commit();
            });
            stderr.WriteLine($"{path}: {n} mappings in device 0, snapshot 1, {changes} blocks of 0 rewritten; " +
                $"{md.MetadataBlocksUsed}/{md.NrMetadataBlocks} metadata blocks, {md.DataBlocksUsed}/{md.NrDataBlocks} data blocks in use");
            return 0;
        }));
        return cmd;
    }
}
