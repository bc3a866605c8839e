using BackupAppliance.EndToEnd.Tests.Support;

namespace BackupAppliance.EndToEnd.Tests;

/// <summary>
/// The product's main job, with real parts only: a full backup and several incrementals of a
/// volume written through NBD, each restored from the receiver and compared with the volume as it
/// was (sha256 of the whole image).
/// </summary>
public sealed class BackupEndToEndTests
{
    [Fact]
    public async Task FullThenIncrementalsRestoreToTheSourceImage()
    {
        const long size = 64L << 20;
        await using var rig = await BackupRig.StartAsync(size);
        var rng = new Random(5);
        var expected = new List<(string Point, string Sha)>();
        long previousChanged = long.MaxValue;
        for (int round = 0; round < 4; round++)
        {
            if (round == 0)
                rig.Write(rng, writes: 40, maxLength: 4 << 20);
            else
                rig.Write(rng, writes: 12, maxLength: 256 << 10, zeroWrites: 2, discards: 2);
            string sha = rig.Snapshot($"source-{round}.raw");
            var result = rig.BackupNowOk();
            string point = result["point"]!.GetValue<string>();
            long changed = result["changed_bytes"]!.GetValue<long>();
            long wire = result["wire_bytes"]!.GetValue<long>();
            long data = result["data_bytes"]!.GetValue<long>();
            Assert.True(wire <= data + (1 << 20), $"round {round}: {wire} bytes on the wire for {data} bytes of data");
            if (round > 0)
                Assert.True(changed < previousChanged && changed < size / 4, $"round {round}: increment of {changed} bytes is not small (full was {previousChanged})");
            previousChanged = round == 0 ? changed : previousChanged;
            expected.Add((point, sha));
            Assert.Equal(sha, rig.Restore(point, $"restored-{round}.raw"));
        }

        // Every point is still there, whole, in order, each an increment of the one before.
        var points = rig.Points();
        Assert.Equal(expected.Select(e => e.Point), points.Select(p => p!["point"]!.GetValue<string>()));
        Assert.Null(points[0]!["base"]?.GetValue<string>());
        for (int i = 1; i < points.Count; i++)
            Assert.Equal(expected[i - 1].Point, points[i]!["base"]!.GetValue<string>());
        for (int i = 0; i < expected.Count; i++)
            Assert.Equal(expected[i].Sha, rig.Restore(expected[i].Point, $"again-{i}.raw"));
        Assert.Equal(expected[^1].Sha, rig.Restore("latest", "latest.raw"));
    }
}
