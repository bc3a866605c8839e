using BackupAppliance.Thin.Tests.Support;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// Long random sequences of create/snapshot/insert/remove/delete/commit on our engine beside an
/// in-memory model; after each sequence the real thin_check must accept the file and the real
/// thin_dump must print exactly the model.
/// </summary>
public class ThinModelTests
{
    private const ulong NrData = 4_000_000;

    private sealed class Harness : IDisposable
    {
        public readonly TempDir Dir = Tool.TempDir();
        public readonly ThinMetadata Md;
        public readonly ThinModel Model = new();
        public readonly Random Rng;
        public readonly int Seed;
        private ulong _nextId;

        public Harness(int seed, long metadataBytes = 64L << 20)
        {
            Seed = seed;
            Rng = new Random(seed);
            Md = ThinMetadata.Create(Dir.Sparse("meta", metadataBytes), 128, NrData);
        }

        public string File => Dir.File("meta");

        public ulong Create()
        {
            ulong id = _nextId++;
            Md.CreateThin(id);
            Model.CreateThin(id);
            return id;
        }

        public ulong Snapshot(ulong origin)
        {
            ulong id = _nextId++;
            Md.CreateSnapshot(id, origin);
            Model.Snapshot(id, origin);
            return id;
        }

        public void Map(ulong dev, ulong v)
        {
            ulong d = Md.AllocateDataBlock();
            Md.Insert(dev, v, d);
            Model.Devices[dev].Map[v] = (d, Model.Time);
        }

        public void Unmap(ulong dev, ulong v)
        {
            bool had = Model.Devices[dev].Map.Remove(v);
            Assert.Equal(had, Md.Remove(dev, v));
        }

        public void Delete(ulong dev)
        {
            Md.DeleteDevice(dev);
            Model.Devices.Remove(dev);
        }

        public void Commit()
        {
            Md.SetTransactionId(Md.TransactionId, Md.TransactionId + 1);
            Model.Transaction++;
            Md.Commit();
        }

        /// <summary>thin_check passes, thin_dump equals the model, no data block leaks.</summary>
        public void Verify(string step)
        {
            string ctx = $"seed {Seed}, {step}";
            Assert.Equal((ulong)Model.DistinctDataBlocks(), Md.DataBlocksUsed);
            Oracle.AssertCheckPasses(File, ctx);
            // Ours also checks data-block reference counts and mapped_blocks, which thin_check 0.9.0 skips.
            var ours = Tool.Bapp("thin", "check", "-q", File);
            Assert.True(ours.ExitCode == 0, $"bapp thin check failed ({ctx}):\n{ours.Stderr}");
            TextAssert.Same(Model.ExpectedDump(2, NrData), Oracle.Dump(File), ctx);
            foreach (var (id, d) in Model.Devices)
                foreach (var (v, (data, _)) in d.Map.Take(50))
                    Assert.Equal(data, Md.Lookup(id, v)?.DataBlock);
        }

        public void Dispose()
        {
            Md.Dispose();
            Dir.Dispose();
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void RandomSequencesMatchModelAndOracles(int seed)
    {
        using var h = new Harness(seed);
        var live = new List<ulong> { h.Create() };
        for (int round = 0; round < 6; round++)
        {
            for (int op = 0; op < 3000; op++)
            {
                int roll = h.Rng.Next(1000);
                ulong dev = live[h.Rng.Next(live.Count)];
                if (roll < 8 && live.Count < 10)
                    live.Add(h.Rng.Next(2) == 0 ? h.Create() : h.Snapshot(dev));
                else if (roll < 11 && live.Count > 2)
                {
                    h.Delete(dev);
                    live.Remove(dev);
                }
                else if (roll < 250)
                    h.Unmap(dev, (ulong)h.Rng.Next(5000));
                else if (roll < 260)
                    h.Commit();
                else
                {
                    ulong v = (ulong)h.Rng.Next(5000);
                    int run = h.Rng.Next(1, 20);
                    for (int j = 0; j < run; j++)
                        h.Map(dev, v + (ulong)j);
                }
            }
            h.Commit();
            h.Verify($"round {round}");
        }
    }

    [Fact]
    public void AMillionMappingsAcrossDevicesMakeThreeLevelTrees()
    {
        using var h = new Harness(17, 256L << 20);
        var devs = Enumerable.Range(0, 4).Select(_ => h.Create()).ToList();
        foreach (var dev in devs)
        {
            // Random order insertions: splits everywhere, not just at the right edge.
            var order = Enumerable.Range(0, 260_000).Select(i => (ulong)i * 3).OrderBy(_ => h.Rng.Next()).ToList();
            foreach (ulong v in order)
                h.Map(dev, v);
        }
        h.Commit();
        Assert.True(MappingTreeDepth(h.File, 0) >= 3, "expected a 3-level mapping tree");
        // Snapshot one, change a part of both, delete some mappings, and verify again.
        ulong snap = h.Snapshot(devs[0]);
        for (int i = 0; i < 20_000; i++)
            h.Map(h.Rng.Next(2) == 0 ? devs[0] : snap, (ulong)h.Rng.Next(780_000));
        for (int i = 0; i < 50_000; i++)
            h.Unmap(devs[1], (ulong)h.Rng.Next(780_000));
        h.Commit();
        Assert.True(h.Model.Devices.Values.Sum(d => d.Map.Count) >= 1_000_000);
        h.Verify("million");
    }

    [Fact]
    public void DataSharedByThreeDevicesUsesOverflowCountsAndSurvivesDeletesInEveryOrder()
    {
        int[][] orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        foreach (var order in orders)
        {
            using var h = new Harness(100 + order[0] * 10 + order[1]);
            ulong origin = h.Create();
            for (ulong v = 0; v < 3000; v++)
                h.Map(origin, v);
            h.Commit();
            ulong s1 = h.Snapshot(origin);
            ulong s2 = h.Snapshot(s1);
            // Writing to each device shadows its shared leaves: every data block in them gains a count.
            // All three write into the same leaf, so it ends up as three distinct copies.
            h.Map(origin, 5);
            h.Map(s1, 6);
            h.Map(s2, 7);
            h.Commit();
            Assert.True(h.Md.DataBlockRefCount(h.Model.Devices[origin].Map[100].Data) >= 3,
                "a block in leaves of three devices should have a count of at least 3 (overflow tree)");
            h.Verify($"order {string.Join(",", order)} before deletes");
            ulong[] ids = [origin, s1, s2];
            foreach (int k in order)
            {
                h.Delete(ids[k]);
                h.Commit();
                h.Verify($"order {string.Join(",", order)} after deleting {ids[k]}");
            }
            Assert.Equal(0UL, h.Md.DataBlocksUsed);
        }
    }

    [Fact]
    public void MetadataSnapshotKeepsItsViewWhileTheLiveTreeChanges()
    {
        using var h = new Harness(7);
        ulong a = h.Create();
        ulong b = h.Create();
        for (ulong v = 0; v < 20_000; v++)
            h.Map(v % 2 == 0 ? a : b, v);
        h.Commit();
        var atSnapshot = h.Model.Clone();
        h.Md.ReserveMetadataSnapshot();
        h.Model.Transaction = h.Md.TransactionId;
        atSnapshot.Transaction = h.Md.TransactionId;

        for (int i = 0; i < 30_000; i++)
            h.Map(h.Rng.Next(2) == 0 ? a : b, (ulong)h.Rng.Next(40_000));
        for (int i = 0; i < 5000; i++)
            h.Unmap(a, (ulong)h.Rng.Next(40_000));
        ulong c = h.Snapshot(a);
        h.Map(c, 1);
        h.Delete(b);
        h.Commit();
        atSnapshot.Transaction = h.Md.TransactionId - 1;

        Oracle.AssertCheckPasses(h.File, "live with snapshot held");
        var ours = Tool.Bapp("thin", "check", h.File);
        Assert.True(ours.ExitCode == 0, $"bapp thin check failed with a snapshot held:\n{ours.Stderr}");
        Oracle.AssertCheckPasses(h.File, "snapshot", metadataSnap: true);
        string snapDump = Oracle.Dump(h.File, "-m");
        // thin_dump -m prints nr_data_blocks="0" (the copy has no space-map roots).
        TextAssert.Same(atSnapshot.ExpectedDump(2, 0), snapDump, "thin_dump -m");
        TextAssert.Same(h.Model.ExpectedDump(2, NrData), Oracle.Dump(h.File), "thin_dump live");
        Assert.Equal(snapDump, Tool.Bapp("thin", "dump", "-m", h.File).Stdout);

        h.Md.ReleaseMetadataSnapshot();
        h.Model.Transaction = h.Md.TransactionId;
        Oracle.AssertCheckPasses(h.File, "after release");
        TextAssert.Same(h.Model.ExpectedDump(2, NrData), Oracle.Dump(h.File), "after release");
        Assert.Equal((ulong)h.Model.DistinctDataBlocks(), h.Md.DataBlocksUsed);
    }

    [Fact]
    public void ReopenedMetadataContinuesAtTheLastCommit()
    {
        using var h = new Harness(9);
        ulong a = h.Create();
        for (ulong v = 0; v < 5000; v++)
            h.Map(a, v);
        h.Commit();
        var committed = h.Model.Clone();
        for (ulong v = 5000; v < 6000; v++)
            h.Map(a, v); // never committed
        h.Md.Dispose();
        using var md = ThinMetadata.Open(h.File);
        Assert.Equal(committed.Transaction, md.TransactionId);
        Assert.Equal(5000UL, md.GetDetails(a).MappedBlocks);
        Assert.Null(md.Lookup(a, 5500));
        TextAssert.Same(committed.ExpectedDump(2, NrData), Oracle.Dump(h.File), "after reopen");
        // The reopened engine keeps working and stays valid.
        md.Insert(a, 9000, md.AllocateDataBlock());
        md.Commit();
        Oracle.AssertCheckPasses(h.File, "after reopen and commit");
    }

    private static int MappingTreeDepth(string file, ulong dev)
    {
        using var r = ThinReader.Open(file);
        ulong node = r.MappingRoot(dev)!.Value;
        int depth = 1;
        while (r.ReadNode(node).IsInternal)
        {
            node = r.ReadNode(node).Value64(0);
            depth++;
        }
        return depth;
    }
}
