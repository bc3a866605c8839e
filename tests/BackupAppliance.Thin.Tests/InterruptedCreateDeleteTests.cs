using System.Text.Json.Nodes;
using BackupAppliance.Thin.Pool;
using BackupAppliance.Thin.Tests.Support;
using static BackupAppliance.Thin.Tests.Support.VolumeBytes;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// A crash between the metadata commit and the catalogue write of a volume's create or delete: the
/// on-disk states it can leave, made by hand, and what the next open does with them. A device the
/// catalogue marks pending and does not name is deleted and its blocks freed; nothing else is.
/// </summary>
public class InterruptedCreateDeleteTests
{
    private const int Bs = 65536;

    [Fact]
    public async Task APendingDeviceWithoutANameIsReclaimedAtOpenWithItsBlocks()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        var keep = Bytes(4 * Bs, 1);
        ulong usedBefore, lostDevice;
        await using (var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings()))
        {
            var a = pool.CreateVolume("a", 16L * Bs);
            await a.WriteAsync(0, keep, false, default);
            usedBefore = pool.Status().DataBlocksUsed;
            var b = pool.CreateVolume("b", 16L * Bs); // its own blocks, and a snapshot of a sharing a's
            await b.WriteAsync(0, Bytes(6 * Bs, 2), false, default);
            pool.Snapshot("a", "b-snap");
            lostDevice = b.Entry.DeviceId;
        }
        // What a crash after the metadata commit of "delete b" (or of a create) and before its
        // catalogue write leaves, as far as the catalogue goes: the name gone, the device pending.
        EditCatalogue(path, c =>
        {
            RemoveVolume(c, "b");
            c["Pending"] = new JsonArray(lostDevice);
        });
        // pool check on the closed pool: an interrupted operation, not an orphan.
        Assert.True(PoolChecker.Check(path).IsValid, "a pending device is no orphan");

        await using (var pool = ThinPool.Open(path))
        {
            Assert.Equal([lostDevice], pool.ReclaimedDevices);
            Assert.Equal(usedBefore, pool.Status().DataBlocksUsed); // b's 6 blocks are free again
            Assert.Equal(keep, await Read(pool.OpenVolume("a"), 0, keep.Length));
            Assert.Equal(keep, await Read(pool.OpenVolume("b-snap"), 0, keep.Length));
            Assert.Equal(["a", "b-snap"], pool.Volumes.Select(v => v.Name).Order());
        }
        Oracle.AssertCheckPasses(Path.Combine(path, ThinPool.MetadataFile), "after the reclaim");
        var check = PoolChecker.Check(path);
        Assert.True(check.IsValid, string.Join("; ", check.CatalogueProblems));
        Assert.Empty(PendingIds(path));
        Assert.DoesNotContain($"dev_id=\"{lostDevice}\"", Oracle.Dump(Path.Combine(path, ThinPool.MetadataFile)));

        await using (var again = ThinPool.Open(path))
            Assert.Empty(again.ReclaimedDevices);
    }

    [Fact]
    public async Task APendingIdWithoutADeviceOrWithANameIsForgottenAndNothingIsDeleted()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        var bytes = Bytes(3 * Bs, 3);
        ulong named;
        await using (var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings()))
        {
            var v = pool.CreateVolume("v", 16L * Bs);
            await v.WriteAsync(0, bytes, false, default);
            named = v.Entry.DeviceId;
        }
        // A crash before a create's metadata commit (an id the metadata never had), and an id
        // that is named (never written so; a reclaim must still leave a named device alone).
        EditCatalogue(path, c => c["Pending"] = new JsonArray(named + 5, named));

        await using (var pool = ThinPool.Open(path))
        {
            Assert.Empty(pool.ReclaimedDevices);
            Assert.Equal(bytes, await Read(pool.OpenVolume("v"), 0, bytes.Length));
        }
        Assert.Empty(PendingIds(path));
        Assert.True(PoolChecker.Check(path).IsValid);
    }

    [Fact]
    public async Task ADeviceNeitherNamedNorPendingIsLeftForPoolCheckToReport()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        ulong device;
        await using (var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings()))
        {
            var v = pool.CreateVolume("v", 16L * Bs);
            await v.WriteAsync(0, Bytes(Bs, 4), false, default);
            device = v.Entry.DeviceId;
        }
        EditCatalogue(path, c => RemoveVolume(c, "v")); // lost some other way: not ours to delete

        await using (var pool = ThinPool.Open(path))
            Assert.Empty(pool.ReclaimedDevices);
        var check = PoolChecker.Check(path);
        Assert.Contains($"metadata: thin device {device} has no volume in the catalogue", string.Join("; ", check.CatalogueProblems));
        Assert.Contains($"dev_id=\"{device}\"", Oracle.Dump(Path.Combine(path, ThinPool.MetadataFile)));
    }

    [Fact]
    public async Task CreatesAndDeletesLeaveNoPendingIds()
    {
        using var dir = Tool.TempDir();
        string path = dir.File("pool");
        await using (var pool = ThinPool.Create(path, 64L * Bs, new PoolSettings()))
        {
            pool.CreateVolume("v", 16L * Bs);
            pool.Snapshot("v", "s1");
            pool.WritableSnapshot("v", "w1");
            pool.DeleteVolume("s1");
            pool.CreateVolume("x", Bs);
        }
        Assert.Empty(PendingIds(path));
        Assert.True(PoolChecker.Check(path).IsValid);
    }

    private static void EditCatalogue(string pool, Action<JsonObject> edit)
    {
        string file = Path.Combine(pool, VolumeCatalogue.FileName);
        var c = JsonNode.Parse(File.ReadAllText(file))!.AsObject();
        edit(c);
        File.WriteAllText(file, c.ToJsonString());
    }

    private static void RemoveVolume(JsonObject catalogue, string name)
    {
        var volumes = catalogue["Volumes"]!.AsArray();
        volumes.Remove(volumes.Single(v => (string)v!["Name"]! == name));
    }

    private static List<ulong> PendingIds(string pool) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(pool, VolumeCatalogue.FileName)))!["Pending"]!.AsArray().Select(n => (ulong)n!).ToList();
}
