using BackupAppliance.EndToEnd.Tests.Support;

namespace BackupAppliance.EndToEnd.Tests;

/// <summary>
/// kill -9 of the agent, the receiver or nats-server in the middle of a backup, at a random moment,
/// many times over one volume: no partial point is ever listed, the backup completes after the
/// restart, and every listed point restores to exactly the image it was taken of.
/// 21 runs (7 per fault) by default, 210 with BAPP_LONG_TESTS=1.
/// </summary>
public sealed class BackupFaultTests
{
    private static int Runs => Environment.GetEnvironmentVariable("BAPP_LONG_TESTS") == "1" ? 210 : 21;

    [Fact]
    public async Task KillNineMidStreamNeverListsAPartialPointAndTheBackupCompletes()
    {
        const long size = 96L << 20;
        // Every run keeps a point of up to ~120 MiB of changes (no retention yet): size the receiver's pool for all of them.
        await using var rig = await BackupRig.StartAsync(size, receiverPoolSize: (Runs + 4) * (128L << 20));
        var rng = new Random(11);
        var taken = new Dictionary<string, string>(); // point → sha256 of the image it was taken of
        rig.Write(rng, writes: 30, maxLength: 4 << 20);
        string first = rig.Snapshot("first.raw");
        taken[rig.BackupNowOk()["point"]!.GetValue<string>()] = first;
        var log = new List<string>();
        int interrupted = 0; // runs whose kill landed mid-stream (the backup resumed or had to be asked again)
        // How long an uninterrupted backup of a run's changes takes in the agent: the kills are spread
        // over the CLI's start (~150 ms) and that long, so most land mid-stream however fast backups get.
        double backupSeconds = 0.5;
        for (int run = 0; run < Runs; run++)
        {
            string fault = (run % 3) switch { 0 => "agent", 1 => "receiver", _ => "nats-server" };
            rig.Write(rng, writes: 10 + rng.Next(20), maxLength: 4 << 20, zeroWrites: rng.Next(2), discards: rng.Next(2));
            string sha = rig.Snapshot($"run-{run}.raw");
            int before = rig.Points().Count;
            var backup = Task.Run(rig.BackupNow);
            await Task.Delay(rng.Next(20, 150 + (int)(1200 * backupSeconds)));
            switch (fault)
            {
                case "agent": rig.KillAgent(); break;
                case "receiver": rig.KillReceiver(); break;
                default: await rig.Nats.KillAsync(); break;
            }
            // Right after the kill, whatever is listed is whole: a point listed is one we know the image of.
            if (fault != "receiver")
                CheckListed(rig, taken, sha, run);
            switch (fault)
            {
                case "agent": rig.StartAgent(); break;
                case "receiver": rig.StartReceiver(); break;
                default: await rig.Nats.StartAgainAsync(); break;
            }
            // A hang is a failure with the daemons' logs, not a test run that never ends.
            var first1 = await backup.WaitAsync(TimeSpan.FromMinutes(3)).ContinueWith(t => t.IsCompletedSuccessfully ? t.Result
                : throw new InvalidOperationException($"run {run} ({fault}): the backup did not finish\n{rig.Logs}"));
            string point;
            if (first1.ExitCode == 0)
            {
                var done = System.Text.Json.Nodes.JsonNode.Parse(first1.Stdout)!;
                point = done["point"]!.GetValue<string>();
                if (done["resumed"]!.GetValue<bool>())
                    interrupted++;
                else
                    backupSeconds = done["seconds"]!.GetValue<double>();
            }
            else
            {
                // The agent was killed under the CLI's feet (or the backup outran the kill): ask again; it resumes.
                point = rig.BackupNowOk()["point"]!.GetValue<string>();
                interrupted++;
            }
            taken.TryAdd(point, sha);
            Assert.Equal(sha, taken[point]);
            var points = CheckListed(rig, taken, sha, run);
            // One new point, or two when the agent died after the receiver's commit but before telling
            // the CLI, so the retry made a second (empty) backup; CheckListed restored any extra one.
            int expectedNew = first1.ExitCode == 0 ? 1 : 2;
            Assert.True(points.Count == before + 1 || points.Count == before + expectedNew, $"run {run} ({fault}): {points.Count} points after, {before} before\n{rig.Logs}");
            Assert.Equal(taken.Count, points.Count);
            Assert.Equal(sha, rig.Restore(point, "restored.raw"));
            log.Add($"{fault}: {(first1.ExitCode == 0 ? "completed through the fault" : "completed on retry")}");
            File.Delete(Path.Combine(rig.Folder, $"run-{run}.raw"));
        }
        // Every point restores to its own image, the old ones too.
        foreach (var (point, sha) in taken.Take(3))
            Assert.Equal(sha, rig.Restore(point, "old.raw"));
        Assert.Equal(taken.Count, rig.Points().Count);
        // The campaign must really interrupt backups, not only kill idle daemons.
        Assert.True(interrupted >= Runs / 4, $"only {interrupted} of {Runs} kills landed mid-stream: {string.Join("; ", log)}");
    }

    private static System.Text.Json.Nodes.JsonArray CheckListed(BackupRig rig, Dictionary<string, string> taken, string pending, int run)
    {
        var points = rig.Points();
        foreach (var p in points)
        {
            string id = p!["point"]!.GetValue<string>();
            if (!taken.ContainsKey(id))
            {
                // A point we have not been told about yet: the interrupted backup committed just before the kill.
                Assert.Equal(pending, rig.Restore(id, "unannounced.raw"));
                taken[id] = pending;
            }
        }
        return points;
    }
}
