using System.CommandLine;
using System.Diagnostics;
using BackupAppliance.ChangeTracking;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary>
/// Hidden <c>bapp vol bench-changes --dir DIR [--sizes 1G,64G,1T] [--changed 10000] [--repeat 5]</c>:
/// for each virtual size, a pool in DIR with one volume, a snapshot, CHANGED distinct random blocks
/// written, a second snapshot; then times the change set by era (the pool freshly reopened, then
/// warm) and by snapshot diff, in-process. ops/bench/changes.sh runs it.
/// </summary>
public static class VolChangesBenchCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var dir = new Option<string>("--dir") { Description = "Scratch folder for the pools", Required = true };
        var sizes = new Option<string>("--sizes") { Description = "Virtual volume sizes", DefaultValueFactory = _ => "1G,64G,1T" };
        var changed = new Option<int>("--changed") { Description = "Distinct blocks written between the snapshots", DefaultValueFactory = _ => 10_000 };
        var repeat = new Option<int>("--repeat") { Description = "Warm repetitions (the median is printed)", DefaultValueFactory = _ => 5 };
        var cmd = new Command("bench-changes", "Time change sets against volume size") { dir, sizes, changed, repeat };
        cmd.Hidden = true;
        cmd.SetAction((r, ct) => CommandRunner.RunAsync(stderr, async () =>
        {
            int n = r.GetValue(changed), reps = r.GetValue(repeat);
            if (n <= 0 || reps <= 0)
                throw new ArgumentException("--changed and --repeat must be positive");
            const int bs = 64 * 1024;
            stdout.WriteLine($"{"size",6} {"blocks",10} {"changed",8} {"era: open+query",16} {"era: warm",10} {"diff: query",12} {"era file",10}");
            foreach (string text in r.GetValue(sizes)!.Split(','))
            {
                if (!SizeArgs.TryParse(text.Trim(), out long size))
                    throw new ArgumentException($"--sizes: '{text}' is not a size such as 1G or 64G");
                long blocks = size / bs;
                if (n > blocks)
                    throw new ArgumentException($"--changed {n} is more than the {blocks} blocks of a {text} volume");
                string poolDir = Path.Combine(r.GetValue(dir)!, $"pool-{text.Trim()}");
                long data = (long)(n * 1.1 + 64) * bs;
                uint era;
                await using (var pool = TrackedPool.Create(poolDir, data, new PoolSettings { DataBlockSize = bs }, commitInterval: TimeSpan.Zero))
                {
                    var v = pool.CreateVolume("v", size);
                    era = (uint)(await pool.SnapshotAsync("v", "base", ct)).ChangeEpoch!.Value;
                    var rng = new Random(42);
                    var chosen = new HashSet<long>();
                    while (chosen.Count < n)
                        chosen.Add(rng.NextInt64(blocks));
                    var page = new byte[4096];
                    rng.NextBytes(page);
                    await Parallel.ForEachAsync(chosen, new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = ct },
                        async (b, c) => await v.WriteAsync(b * bs, page, fua: false, c));
                    await v.FlushAsync(ct);
                    await pool.SnapshotAsync("v", "next", ct);
                }
                var clock = Stopwatch.StartNew();
                ChangeSet set;
                await using (var pool = TrackedPool.Open(poolDir, commitInterval: TimeSpan.Zero))
                    set = await pool.ChangesSinceEraAsync("v", era, "next", ct);
                double cold = clock.Elapsed.TotalMilliseconds;
                Require(set, n, "by era");
                var warm = new List<double>();
                var diff = new List<double>();
                await using (var pool = TrackedPool.Open(poolDir, commitInterval: TimeSpan.Zero))
                {
                    for (int i = 0; i < reps; i++)
                    {
                        clock.Restart();
                        Require(await pool.ChangesSinceEraAsync("v", era, "next", ct), n, "by era");
                        warm.Add(clock.Elapsed.TotalMilliseconds);
                        clock.Restart();
                        Require(pool.ChangesSinceSnapshot("next", "base"), n, "by snapshot diff");
                        diff.Add(clock.Elapsed.TotalMilliseconds);
                    }
                    string eraFile = pool.EraFile(pool.Entry("v"));
                    long eraBytes = new FileInfo(eraFile).Length;
                    stdout.WriteLine($"{text.Trim(),6} {blocks,10} {n,8} {cold,13:F1} ms {Median(warm),7:F1} ms {Median(diff),9:F1} ms {SizeArgs.Human(eraBytes),10}");
                    stdout.Flush();
                }
                System.IO.Directory.Delete(poolDir, recursive: true);
            }
            return 0;
        }));
        return cmd;
    }

    private static void Require(ChangeSet set, int n, string how)
    {
        long got = set.Blocks(unmapped: false).LongCount();
        if (got != n)
            throw new InvalidOperationException($"the change set {how} holds {got} blocks, {n} were written");
    }

    private static double Median(List<double> xs)
    {
        xs.Sort();
        return xs[xs.Count / 2];
    }
}
