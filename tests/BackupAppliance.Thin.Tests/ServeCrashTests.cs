using BackupAppliance.Nbd;
using BackupAppliance.Thin.Tests.Support;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// kill -9 of `bapp serve` during a random write + flush workload from an NBD client, at random
/// moments: after a restart every write acknowledged before the last completed flush (or written
/// with FUA) reads back, and thin_check passes on the pool's metadata.
/// </summary>
public class ServeCrashTests
{
    private const int Sector = 512;
    private const long VolumeSize = 16L << 20;
    private static int Runs => Environment.GetEnvironmentVariable("BAPP_LONG_TESTS") == "1" ? 300 : 30;

    [Fact]
    public async Task AcknowledgedFlushedWritesSurviveKill9()
    {
        using var dir = Tool.TempDir();
        string pool = dir.File("pool");
        Assert.Equal(0, Tool.Bapp("pool", "create", "--pool", pool, "--data-size", "256M").ExitCode);
        Assert.Equal(0, Tool.Bapp("vol", "create", "--pool", pool, "v", "--size", "16M").ExitCode);
        var durable = new byte[VolumeSize];       // what must be there after a crash
        var undetermined = new bool[VolumeSize / Sector]; // written since the last completed flush
        var master = new Random(7331);
        for (int run = 0; run < Runs; run++)
        {
            int seed = master.Next();
            string ctx = $"run {run}, seed {seed}";
            using (var server = ServeProcess.Start(pool))
            {
                var workload = Workload(server.Port, seed, durable, undetermined);
                await Task.Delay(master.Next(100, 1500));
                server.Kill();
                int flushes = await workload;
                var check = Tool.Run("thin_check", Path.Combine(pool, "metadata"));
                Assert.True(check.ExitCode == 0, $"{ctx}: thin_check failed after kill -9 ({flushes} flushes acknowledged):\n{check.Stderr}");
            }
            using (var server = ServeProcess.Start(pool))
            {
                await using var c = await NbdClient.ConnectAsync("127.0.0.1", server.Port, "v", default);
                var actual = new byte[VolumeSize];
                for (long off = 0; off < VolumeSize; off += 4 << 20)
                    await c.ReadAsync(off, actual.AsMemory((int)off, 4 << 20), default);
                var lost = new List<int>();
                for (int s = 0; s < undetermined.Length; s++)
                {
                    if (undetermined[s])
                        continue;
                    if (!actual.AsSpan(s * Sector, Sector).SequenceEqual(durable.AsSpan(s * Sector, Sector)))
                        lost.Add(s);
                }
                if (lost.Count > 0)
                {
                    int zero = lost.Count(s => actual.AsSpan(s * Sector, Sector).IndexOfAnyExcept((byte)0) < 0);
                    var blocks = string.Join(",", lost.Select(s => s / 128).Distinct());
                    Assert.Fail($"{ctx}: {lost.Count} sectors lost ({zero} read as zeros), first {lost[0]}, blocks {blocks}");
                }
                // What is there now is the new baseline.
                actual.CopyTo(durable, 0);
                Array.Clear(undetermined);
                server.Stop();
            }
        }
        Assert.Equal(0, Tool.Bapp("pool", "check", "--pool", pool).ExitCode);
    }

    /// <summary>Writes, FUA writes and flushes until the server dies; returns how many flushes completed.</summary>
    private static async Task<int> Workload(int port, int seed, byte[] durable, bool[] undetermined)
    {
        var rng = new Random(seed);
        var current = (byte[])durable.Clone();
        int flushes = 0;
        try
        {
            await using var c = await NbdClient.ConnectAsync("127.0.0.1", port, "v", default);
            while (true)
            {
                int roll = rng.Next(100);
                if (roll < 10)
                {
                    await c.FlushAsync(default);
                    current.CopyTo(durable, 0);
                    Array.Clear(undetermined);
                    flushes++;
                    continue;
                }
                int sectors = rng.Next(1, 512);
                long off = (long)rng.Next((int)(VolumeSize / Sector - sectors)) * Sector;
                var data = new byte[sectors * Sector];
                rng.NextBytes(data);
                bool fua = roll < 20;
                // Marked before sending: a write in flight at the kill may or may not have landed.
                for (int s = 0; s < sectors; s++)
                    undetermined[off / Sector + s] = true;
                await c.WriteAsync(off, data, fua, default);
                data.CopyTo(current, off);
                if (fua)
                {
                    // This write's bytes are durable now (a later write to the same sectors resets this).
                    data.CopyTo(durable, off);
                    for (int s = 0; s < sectors; s++)
                        undetermined[off / Sector + s] = false;
                }
            }
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or NbdClientException or ObjectDisposedException)
        {
            return flushes; // the server was killed
        }
    }
}
