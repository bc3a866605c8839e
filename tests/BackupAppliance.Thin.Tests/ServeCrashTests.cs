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
        string pool = CreatePool(dir);
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
                var actual = await ReadAllAsync(server.Port, "v");
                AssertDurable(ctx, actual, durable, undetermined);
                // What is there now is the new baseline.
                actual.CopyTo(durable, 0);
                Array.Clear(undetermined);
                server.Stop();
            }
        }
        Assert.Equal(0, Tool.Bapp("pool", "check", "--pool", pool).ExitCode);
    }

    /// <summary>
    /// The same kill -9 campaign with snapshots taken during the workload (through the server's
    /// control socket), so that writes break sharing and copies are under way when the server dies:
    /// besides the flushed writes, every snapshot must read back exactly what the volume held when it
    /// was taken, run after run, and a snapshot whose request the kill cut short either is not there
    /// or is exact too.
    /// </summary>
    [Fact]
    public async Task SnapshotsTakenDuringWritesNeverChangeAcrossKill9()
    {
        using var dir = Tool.TempDir();
        string pool = CreatePool(dir);
        var durable = new byte[VolumeSize];
        var undetermined = new bool[VolumeSize / Sector];
        var snapshots = new List<(string Name, byte[] Bytes)>(); // committed: each must stay exact
        var master = new Random(4242);
        int taken = 0;
        for (int run = 0; run < Runs; run++)
        {
            int seed = master.Next();
            string ctx = $"run {run}, seed {seed}";
            var requested = new List<(string Name, byte[] Bytes, bool CutShort)>();
            int killed = 0;
            using (var server = ServeProcess.Start(pool))
            {
                var workload = Workload(server.Port, seed, durable, undetermined, snapshot: bytes =>
                {
                    string name = $"s{taken++}";
                    bool ok = Tool.Bapp("vol", "snapshot", "--pool", pool, "v", name).ExitCode == 0;
                    bool cutShort = Volatile.Read(ref killed) != 0;
                    requested.Add((name, bytes, cutShort));
                    // Only a snapshot the live server took made the writes before it durable.
                    return ok && !cutShort;
                });
                await Task.Delay(master.Next(300, 1500));
                Volatile.Write(ref killed, 1);
                server.Kill();
                await workload;
                var check = Tool.Run("thin_check", Path.Combine(pool, "metadata"));
                Assert.True(check.ExitCode == 0, $"{ctx}: thin_check failed after kill -9:\n{check.Stderr}");
            }
            // Which of this run's snapshots exist: one the kill cut short may or may not.
            var list = Tool.Bapp("vol", "list", "--pool", pool, "--json");
            Assert.True(list.ExitCode == 0, $"{ctx}: vol list failed: {list.Stderr}");
            var present = requested.Where(r => list.Stdout.Contains($"\"{r.Name}\"")).ToList();
            Assert.True(present.Count >= requested.Count(r => !r.CutShort), $"{ctx}: a snapshot taken before the kill is missing:\n{list.Stdout}");
            using (var server = ServeProcess.Start(pool))
            {
                var actual = await ReadAllAsync(server.Port, "v");
                AssertDurable($"{ctx}, snapshots requested {string.Join(", ", requested.Select(r => r.Name + (r.CutShort ? " (cut short)" : "")))}", actual, durable, undetermined);
                foreach (var r in present)
                {
                    // A request the kill cut short was carried out by the server (what the volume
                    // held then) or, the server gone, on the closed pool (what survived the crash).
                    var bytes = r.CutShort && !(await ReadAllAsync(server.Port, r.Name)).AsSpan().SequenceEqual(r.Bytes) ? actual : r.Bytes;
                    snapshots.Add((r.Name, (byte[])bytes.Clone()));
                }
                foreach (var (name, bytes) in snapshots)
                {
                    var seen = await ReadAllAsync(server.Port, name);
                    int at = seen.AsSpan().CommonPrefixLength(bytes);
                    Assert.True(at == bytes.Length, $"{ctx}: snapshot {name} changed: first difference at byte {at} (block {at / (64 << 10)})");
                }
                actual.CopyTo(durable, 0);
                Array.Clear(undetermined);
                server.Stop();
            }
            // Keep the newest three (older ones stay checked until deleted here; deleting frees blocks
            // the later runs reuse).
            while (snapshots.Count > 3)
            {
                Assert.Equal(0, Tool.Bapp("vol", "delete", "--pool", pool, snapshots[0].Name).ExitCode);
                snapshots.RemoveAt(0);
            }
        }
        Assert.True(taken >= Runs / 2, $"only {taken} snapshots were taken in {Runs} runs: the campaign barely broke sharing");
        Assert.Equal(0, Tool.Bapp("pool", "check", "--pool", pool).ExitCode);
    }

    /// <summary>A pool of 256 MiB of data with the 16 MiB volume <c>v</c>; returns its folder.</summary>
    private static string CreatePool(TempDir dir)
    {
        string pool = dir.File("pool");
        Assert.Equal(0, Tool.Bapp("pool", "create", "--pool", pool, "--data-size", "256M").ExitCode);
        Assert.Equal(0, Tool.Bapp("vol", "create", "--pool", pool, "v", "--size", "16M").ExitCode);
        return pool;
    }

    private static async Task<byte[]> ReadAllAsync(int port, string export)
    {
        await using var c = await NbdClient.ConnectAsync("127.0.0.1", port, export, default);
        var bytes = new byte[VolumeSize];
        for (long off = 0; off < VolumeSize; off += 4 << 20)
            await c.ReadAsync(off, bytes.AsMemory((int)off, 4 << 20), default);
        return bytes;
    }

    /// <summary>Every sector written before the last completed flush (or with FUA) holds what was written.</summary>
    private static void AssertDurable(string ctx, byte[] actual, byte[] durable, bool[] undetermined)
    {
        var lost = new List<int>();
        for (int s = 0; s < undetermined.Length; s++)
        {
            if (!undetermined[s] && !actual.AsSpan(s * Sector, Sector).SequenceEqual(durable.AsSpan(s * Sector, Sector)))
                lost.Add(s);
        }
        if (lost.Count > 0)
        {
            int zero = lost.Count(s => actual.AsSpan(s * Sector, Sector).IndexOfAnyExcept((byte)0) < 0);
            var blocks = string.Join(",", lost.Select(s => s / 128).Distinct());
            Assert.Fail($"{ctx}: {lost.Count} sectors lost ({zero} read as zeros), first {lost[0]}, blocks {blocks}");
        }
    }

    /// <summary>
    /// Writes, FUA writes and flushes until the server dies; returns how many flushes completed. With
    /// <paramref name="snapshot"/>, now and then (between writes, none in flight) asks for a snapshot
    /// of what the volume holds; it returns whether the request succeeded.
    /// </summary>
    private static async Task<int> Workload(int port, int seed, byte[] durable, bool[] undetermined, Func<byte[], bool>? snapshot = null)
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
                if (snapshot is not null && rng.Next(40) == 0)
                {
                    // A snapshot holds every acknowledged write, flushed or not (it commits them).
                    if (!snapshot((byte[])current.Clone()))
                        return flushes; // the server was killed meanwhile
                    current.CopyTo(durable, 0);
                    Array.Clear(undetermined);
                    continue;
                }
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
