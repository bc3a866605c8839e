using System.Text.Json.Nodes;
using BackupAppliance.Cli.Commands.Pool;
using BackupAppliance.Nbd;
using BackupAppliance.TestSupport;

namespace BackupAppliance.ChangeTracking.Tests;

/// <summary>
/// kill -9 of `bapp serve` during NBD writes, flushes and era checkpoints (snapshots through the
/// control socket), at random points. After the crash, every acknowledged write's blocks are in
/// "written since" the era the write happened in: read straight from the crashed era file, and
/// again after the next activation has archived the recovered writeset. era_check passes throughout.
/// </summary>
public sealed class EraCrashTests
{
    private const int BlockSize = 64 * 1024;
    private const long VolumeSize = 256L * BlockSize;

    public static TheoryData<int> Runs() => CrashRuns.Numbers(normal: 30, longRuns: 300);

    [Theory]
    [MemberData(nameof(Runs))]
    public async Task AcknowledgedWritesAreInWrittenSinceTheirEraAfterKill9(int run)
    {
        var rng = new Random(1000 + run);
        using var dir = Tool.TempDir();
        string pool = dir.File("pool");
        Ok(Tool.Bapp("pool", "create", "--pool", pool, "--data-size", "256M"));
        Ok(Tool.Bapp("vol", "create", "--pool", pool, "v", "--size", VolumeSize.ToString()));
        string eraFile = Status(pool)["eraFile"]!.GetValue<string>();

        var acked = new List<(long Offset, int Length, uint Era)>();
        using (var server = ServeProcess.Start(pool))
        {
            uint era = Status(pool)["currentEra"]!.GetValue<uint>();
            await using var client = await NbdClient.ConnectAsync("127.0.0.1", server.Port, "v", CancellationToken.None);
            var killAt = TimeSpan.FromMilliseconds(rng.Next(200, 1500));
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var killer = Task.Run(async () =>
            {
                await Task.Delay(killAt);
                server.Kill();
            });
            int snaps = 0;
            try
            {
                while (!killer.IsCompleted)
                {
                    int op = rng.Next(100);
                    if (op < 85)
                    {
                        long off = rng.NextInt64(VolumeSize - 8192);
                        int len = 1 + rng.Next(8192);
                        var buf = new byte[len];
                        rng.NextBytes(buf);
                        await client.WriteAsync(off, buf, fua: false, CancellationToken.None);
                        acked.Add((off, len, era));
                    }
                    else if (op < 95)
                        await client.FlushAsync(CancellationToken.None);
                    else
                    {
                        var r = Tool.Bapp("vol", "snapshot", "--pool", pool, "v", $"s{snaps++}");
                        if (r.ExitCode != 0)
                            break; // the server died under it
                        // "changes since it are era E and later": writes from now on are in era E or later.
                        era = uint.Parse(System.Text.RegularExpressions.Regex.Match(r.Stdout, @"era (\d+) and later").Groups[1].Value);
                    }
                }
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or NbdClientException or ObjectDisposedException or InvalidOperationException)
            {
                // The connection died with the server: what was acknowledged before is what counts.
            }
            await killer;
        }
        Assert.NotEmpty(acked);

        AssertContained(pool, acked, "straight after the crash");
        EraCheck(eraFile);
        // Activation (the next serve) archives the crashed writeset and starts a new era.
        using (var again = ServeProcess.Start(pool))
            again.Stop();
        AssertContained(pool, acked, "after the next activation");
        EraCheck(eraFile);
        var check = Tool.Run("thin_check", Path.Combine(pool, "metadata"));
        Assert.True(check.ExitCode == 0, check.Stderr);
    }

    private static void AssertContained(string pool, List<(long Offset, int Length, uint Era)> acked, string when)
    {
        foreach (var era in acked.Select(a => a.Era).Distinct())
        {
            var r = Ok(Tool.Bapp("vol", "changes", "--pool", pool, "v", "--since-era", era.ToString(), "--json"));
            var blocks = VolumeJson.ParseChanges((JsonObject)JsonNode.Parse(r.Stdout)!).Blocks().ToHashSet();
            foreach (var w in acked.Where(a => a.Era == era))
                for (long b = w.Offset / BlockSize; b * BlockSize < w.Offset + w.Length; b++)
                    Assert.True(blocks.Contains(b), $"{when}: block {b} (write at {w.Offset}+{w.Length}, acknowledged in era {era}) is missing from written-since {era}");
        }
    }

    private static void EraCheck(string eraFile)
    {
        var r = Tool.Run("era_check", eraFile);
        Assert.True(r.ExitCode == 0, $"era_check: {r.Stdout}{r.Stderr}");
    }

    private static JsonObject Status(string pool) =>
        (JsonObject)JsonNode.Parse(Ok(Tool.Bapp("vol", "status", "--pool", pool, "v", "--json")).Stdout)!;

    private static Tool.Result Ok(Tool.Result r)
    {
        Assert.True(r.ExitCode == 0, $"bapp failed: {r.Stderr}");
        return r;
    }
}
