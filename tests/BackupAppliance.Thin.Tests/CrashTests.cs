using System.Diagnostics;
using BackupAppliance.Thin.Exercise;
using BackupAppliance.Thin.Tests.Support;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// kill -9 during a long series of commits, at random moments: the metadata must always open at the
/// last committed transaction (or the one whose superblock write was under way), pass thin_check, and
/// hold exactly what a replay of the same seeded workload holds at that transaction.
/// </summary>
public class CrashTests
{
    private static int Runs => Environment.GetEnvironmentVariable("BAPP_LONG_TESTS") == "1" ? 500 : 50;

    [Fact]
    public void KilledDuringCommitsReopensAtLastCommittedTransaction()
    {
        string bapp = Path.Combine(AppContext.BaseDirectory, "bapp.dll");
        Assert.True(File.Exists(bapp), $"bapp.dll not found next to the tests ({bapp})");
        var master = new Random(20261121);
        using var dir = Tool.TempDir();
        for (int run = 0; run < Runs; run++)
        {
            int seed = master.Next();
            string file = dir.File($"crash-{run}.meta");
            ulong lastReported = Kill(bapp, file, seed, killAfterMs: master.Next(150, 1200), out string log);
            string ctx = $"run {run}, seed {seed}, last reported commit {lastReported}";

            var check = Tool.Run("thin_check", file);
            Assert.True(check.ExitCode == 0, $"{ctx}: thin_check failed after kill -9:\n{check.Stderr}");
            ulong tid;
            using (var md = ThinMetadata.Open(file))
                tid = md.TransactionId;
            Assert.True(tid == lastReported || tid == lastReported + 1,
                $"{ctx}: metadata opened at transaction {tid}, expected {lastReported} or {lastReported + 1}\n{log}");

            // Replay the same workload to that transaction; the dumps must match exactly.
            string replay = dir.File($"replay-{run}.meta");
            using (var f = new FileStream(replay, FileMode.Create))
                f.SetLength(32L << 20);
            using (var md = ThinMetadata.Create(replay, 128, 200_000))
            {
                var w = new MetadataWorkload(seed);
                while (md.TransactionId < tid)
                    w.Step(md);
            }
            TextAssert.Same(Oracle.Dump(replay), Oracle.Dump(file), ctx);
            File.Delete(file);
            File.Delete(replay);
        }
    }

    private static ulong Kill(string bapp, string file, int seed, int killAfterMs, out string log)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { bapp, "thin", "exercise", file, "--seed", seed.ToString(), "--steps", "100000" })
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        ulong last = 0;
        bool started = false;
        var lines = new List<string>();
        var reader = Task.Run(() =>
        {
            string? line;
            while ((line = p.StandardOutput.ReadLine()) is not null)
            {
                lock (lines)
                {
                    lines.Add(line);
                    if (line.StartsWith("committed ", StringComparison.Ordinal))
                    {
                        last = ulong.Parse(line["committed ".Length..]);
                        started = true;
                    }
                }
            }
        });
        // Count the delay from the first commit, so start-up time does not eat the window.
        var sw = Stopwatch.StartNew();
        while (!Volatile.Read(ref started) && sw.ElapsedMilliseconds < 30_000 && !p.HasExited)
            Thread.Sleep(5);
        Thread.Sleep(killAfterMs);
        p.Kill(entireProcessTree: true); // SIGKILL
        p.WaitForExit();
        reader.Wait();
        string err = p.StandardError.ReadToEnd();
        lock (lines)
        {
            log = $"exit {p.ExitCode}; stderr: {err}; last lines: {string.Join(" | ", lines.TakeLast(3))}";
            Assert.True(started, $"the exercise never committed: {log}");
            return last;
        }
    }
}
