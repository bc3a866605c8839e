using System.Buffers.Binary;
using BackupAppliance.PersistentData.Tests.Support;

namespace BackupAppliance.PersistentData.Tests;

public class BTreeRangeTests
{
    [Fact]
    public void RangeVisitsExactlyTheKeysInOrder()
    {
        const int seed = 4242;
        var rng = new Random(seed);
        using var h = new MetadataHarness();
        var tree = new BTree(h.Tm, new PlainValue(8));
        ulong root = tree.CreateEmpty();
        var model = new SortedDictionary<ulong, ulong>();
        Span<byte> v = stackalloc byte[8];
        for (int i = 0; i < 60_000; i++)
        {
            ulong k = (ulong)rng.Next(1_000_000);
            BinaryPrimitives.WriteUInt64LittleEndian(v, k * 3);
            tree.Insert(ref root, k, v);
            model[k] = k * 3;
        }
        for (int q = 0; q < 200; q++)
        {
            ulong a = (ulong)rng.Next(1_100_000), b = a + (ulong)rng.Next(50_000);
            var got = new List<(ulong, ulong)>();
            tree.VisitRange(root, a, b, (k, val) => { got.Add((k, BinaryPrimitives.ReadUInt64LittleEndian(val))); return true; });
            var want = model.Where(kv => kv.Key >= a && kv.Key < b).Select(kv => (kv.Key, kv.Value)).ToList();
            Assert.True(want.SequenceEqual(got), $"seed {seed}, range [{a}, {b}): {got.Count} entries, expected {want.Count}");
        }
        // Stopping early: only the first 10 keys at or after 500,000.
        var first = new List<ulong>();
        tree.VisitRange(root, 500_000, ulong.MaxValue, (k, _) => { first.Add(k); return first.Count < 10; });
        Assert.Equal(model.Keys.Where(k => k >= 500_000).Take(10), first);
    }
}
