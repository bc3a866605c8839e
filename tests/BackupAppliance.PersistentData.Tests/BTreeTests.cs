using System.Buffers.Binary;
using BackupAppliance.Core;
using BackupAppliance.PersistentData.Tests.Support;

namespace BackupAppliance.PersistentData.Tests;

/// <summary>
/// The persistent-data btree against a SortedDictionary model: random inserts, overwrites and removes,
/// with the kernel's node invariants checked on the raw committed nodes after every phase, and every
/// block's reference count recomputed from what is reachable.
/// </summary>
public class BTreeTests
{
    [Theory]
    [InlineData(4, 336)]
    [InlineData(8, 252)]
    [InlineData(12, 201)]
    [InlineData(16, 168)]
    [InlineData(24, 126)]
    public void Max_entries_match_the_kernel_table(int valueSize, int expected)
    {
        Assert.Equal(expected, BTreeNode.CalcMaxEntries(valueSize));
        Assert.Equal(expected, BTreeChecker.ExpectedMaxEntries(valueSize));
    }

    [Theory]
    [InlineData(4, 60_000, 401)]
    [InlineData(8, 200_000, 802)]
    [InlineData(16, 40_000, 1603)]
    [InlineData(24, 30_000, 2404)]
    public void Random_operations_match_a_sorted_dictionary(int valueSize, int nrKeys, int seed)
    {
        using var h = new MetadataHarness(64L << 20);
        var tree = new BTree(h.Tm, new PlainValue(valueSize));
        ulong root = tree.CreateEmpty();
        h.Commit();
        ulong baseline = h.Sm.NrAllocated;
        var model = new SortedDictionary<ulong, byte[]>();
        var rng = new Random(seed);
        string ctx = $"seed {seed}, value size {valueSize}";

        // Phase 1: random keys, ascending runs (which split full leaves in half) and overwrites.
        InsertPhase(tree, ref root, model, rng, nrKeys, valueSize, ctx + ", insert");
        var shape = CommitAndCheck(h, tree, root, model, valueSize, rng, ctx + ", after inserts");
        if (valueSize == 8)
            Assert.True(shape.Depth >= 3, $"{ctx}: {nrKeys} keys gave only {shape.Depth} levels");

        // Phase 2: remove about half, plus keys that are absent.
        var keys = model.Keys.ToArray();
        rng.Shuffle(keys);
        for (int i = 0; i < keys.Length / 2; i++)
        {
            Assert.True(tree.Remove(ref root, keys[i]), $"{ctx}: remove {keys[i]} said absent");
            model.Remove(keys[i]);
            if (i % 7 == 0)
            {
                ulong absent = RandomKey(rng);
                Assert.True(tree.Remove(ref root, absent) == model.Remove(absent), $"{ctx}: remove of {absent}");
            }
        }
        CommitAndCheck(h, tree, root, model, valueSize, rng, ctx + ", after removing half");

        // Phase 3: more inserts on the thinned tree.
        InsertPhase(tree, ref root, model, rng, nrKeys / 4, valueSize, ctx + ", reinsert");
        CommitAndCheck(h, tree, root, model, valueSize, rng, ctx + ", after reinserting");

        // Phase 4: remove everything in random order.
        keys = model.Keys.ToArray();
        rng.Shuffle(keys);
        foreach (ulong k in keys)
            Assert.True(tree.Remove(ref root, k), $"{ctx}: remove {k} said absent");
        model.Clear();
        CommitAndCheck(h, tree, root, model, valueSize, rng, ctx + ", after removing all");
        var node = tree.ReadNode(root);
        Assert.True(node.IsLeaf && node.NrEntries == 0, $"{ctx}: emptied tree's root is not an empty leaf (flags {node.Flags}, {node.NrEntries} entries)");
        Assert.True(h.Sm.NrAllocated == baseline, $"{ctx}: {h.Sm.NrAllocated} blocks allocated, {baseline} before the inserts");
    }

    [Theory]
    [InlineData(false, 31, 16384, 2)]
    [InlineData(true, 32, 64, 2)]
    [InlineData(true, 33, 16384, 3)] // the shared root's count 3 is committed into the overflow tree
    public void Tree_shared_by_several_roots_is_copied_on_write_and_deleting_all_frees_everything(bool commitBeforeSharing, int seed, int cacheBlocks, int nrRoots)
    {
        using var h = new MetadataHarness(64L << 20, cacheBlocks);
        h.Commit();
        ulong baseline = h.Sm.NrAllocated;
        var tree = new BTree(h.Tm, new PlainValue(8));
        var rng = new Random(seed);
        string ctx = $"seed {seed}";

        ulong root = tree.CreateEmpty();
        var original = new SortedDictionary<ulong, byte[]>();
        InsertPhase(tree, ref root, original, rng, 40_000, 8, ctx);
        if (commitBeforeSharing)
            h.Commit();

        for (int i = 1; i < nrRoots; i++)
            h.Tm.Inc(root);
        ulong r1 = root, r2 = root, r3 = root;
        var extra = nrRoots == 3 ? new[] { r3 } : Array.Empty<ulong>();
        if (nrRoots == 3)
        {
            h.Commit();
            Assert.Equal(3u, h.Sm.Count(root));
            Audit(h, ctx + ", three roots", root, root, root);
        }
        var m1 = new SortedDictionary<ulong, byte[]>(original);
        var m2 = new SortedDictionary<ulong, byte[]>(original);

        // Change the tree through r1 only: inserts, overwrites, removes.
        InsertPhase(tree, ref r1, m1, rng, 6_000, 8, ctx + ", via r1");
        var keys = m1.Keys.ToArray();
        rng.Shuffle(keys);
        foreach (ulong k in keys.Take(15_000))
        {
            Assert.True(tree.Remove(ref r1, k), $"{ctx}: remove {k} via r1");
            m1.Remove(k);
        }
        Assert.NotEqual(r1, r2);
        AssertLookups(tree, r2, m2, rng, ctx + ", r2 before commit");
        AssertLookups(tree, r1, m1, rng, ctx + ", r1 before commit");
        h.Commit();
        CheckContents(h, r1, m1, 8, ctx + ", r1");
        CheckContents(h, r2, m2, 8, ctx + ", r2");
        Audit(h, ctx + ", r1 and r2", [r1, r2, .. extra]);

        // Now change r2 (its nodes are still shared with r1 where r1 did not write).
        keys = m2.Keys.ToArray();
        rng.Shuffle(keys);
        foreach (ulong k in keys.Take(5_000))
        {
            Assert.True(tree.Remove(ref r2, k), $"{ctx}: remove {k} via r2");
            m2.Remove(k);
        }
        h.Commit();
        CheckContents(h, r1, m1, 8, ctx + ", r1 after r2 changed");
        CheckContents(h, r2, m2, 8, ctx + ", r2 after r2 changed");
        Audit(h, ctx + ", r1 and r2 after r2 changed", [r1, r2, .. extra]);

        tree.Delete(r1);
        h.Commit();
        CheckContents(h, r2, m2, 8, ctx + ", r2 after deleting r1");
        Audit(h, ctx + ", after deleting r1", [r2, .. extra]);

        tree.Delete(r2);
        h.Commit();
        Audit(h, ctx + ", after deleting r1 and r2", extra);
        foreach (ulong r in extra)
        {
            CheckContents(h, r, original, 8, ctx + ", untouched third root");
            tree.Delete(r);
        }
        h.Commit();
        Audit(h, ctx + ", after deleting all");
        Assert.Equal(baseline, h.Sm.NrAllocated);
    }

    [Fact]
    public void Flipped_byte_in_a_committed_node_is_reported_with_its_block()
    {
        using var h = new MetadataHarness();
        var tree = new BTree(h.Tm, new PlainValue(8));
        ulong root = tree.CreateEmpty();
        Span<byte> v = stackalloc byte[8];
        for (ulong k = 0; k < 2000; k++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(v, k * 10);
            tree.Insert(ref root, k * 3, v);
        }
        h.Commit();

        var rootNode = h.ReadRaw(root);
        Assert.Equal(BTreeNode.InternalFlag, BinaryPrimitives.ReadUInt32LittleEndian(rootNode.AsSpan(4)));
        ulong firstKeyOfLeaf1 = BinaryPrimitives.ReadUInt64LittleEndian(rootNode.AsSpan(32 + 8));
        ulong leaf1 = BinaryPrimitives.ReadUInt64LittleEndian(rootNode.AsSpan(32 + 8 * 252 + 8));
        h.CorruptByte(leaf1, 200);
        h.Reopen();

        tree = new BTree(h.Tm, new PlainValue(8));
        Assert.True(tree.Lookup(root, 0, v), "a key in an intact leaf is still found");
        Assert.Equal(0ul, BinaryPrimitives.ReadUInt64LittleEndian(v));
        var e = Assert.Throws<CorruptMetadataException>(() => tree.Lookup(root, firstKeyOfLeaf1, new byte[8]));
        Assert.Equal(leaf1, e.Block);
        Assert.Contains("checksum", e.Problem);

        h.CorruptByte(root, 4000);
        h.Reopen();
        tree = new BTree(h.Tm, new PlainValue(8));
        e = Assert.Throws<CorruptMetadataException>(() => tree.Lookup(root, 0, new byte[8]));
        Assert.Equal(root, e.Block);
    }

    private static ulong RandomKey(Random rng) => (ulong)rng.NextInt64(0, 1L << 48);

    private static void InsertPhase(BTree tree, ref ulong root, SortedDictionary<ulong, byte[]> model, Random rng, int count, int valueSize, string ctx)
    {
        var inserted = new List<ulong>();
        int done = 0;
        ulong r = root;
        while (done < count)
        {
            int kind = rng.Next(10);
            if (kind < 6 || inserted.Count == 0)
            {
                Put(RandomKey(rng));
            }
            else if (kind < 9)
            {
                // An ascending run from a random base.
                ulong b = RandomKey(rng);
                int run = rng.Next(50, 600);
                for (int i = 0; i < run && done < count; i++)
                    Put(b + (ulong)i);
            }
            else
            {
                Put(inserted[rng.Next(inserted.Count)]); // overwrite
            }
        }
        root = r;

        void Put(ulong key)
        {
            var value = new byte[valueSize];
            rng.NextBytes(value);
            bool isNew = !model.ContainsKey(key);
            bool saidNew = tree.Insert(ref r, key, value);
            Assert.True(isNew == saidNew, $"{ctx}: insert {key} returned {saidNew}, model says new = {isNew}");
            model[key] = value;
            inserted.Add(key);
            done++;
        }
    }

    private static void AssertLookups(BTree tree, ulong root, SortedDictionary<ulong, byte[]> model, Random rng, string ctx)
    {
        var got = new byte[tree.ValueType.Size];
        foreach (var (k, v) in model)
        {
            Assert.True(tree.Lookup(root, k, got), $"{ctx}: key {k} missing");
            Assert.True(got.AsSpan().SequenceEqual(v), $"{ctx}: key {k} has the wrong value");
        }
        for (int i = 0; i < 1000; i++)
        {
            ulong k = RandomKey(rng);
            Assert.True(tree.Lookup(root, k, got) == model.ContainsKey(k), $"{ctx}: lookup of {k}");
        }
    }

    private static BTreeChecker.Shape CommitAndCheck(MetadataHarness h, BTree tree, ulong root, SortedDictionary<ulong, byte[]> model, int valueSize, Random rng, string ctx)
    {
        AssertLookups(tree, root, model, rng, ctx);
        h.Commit();
        var shape = CheckContents(h, root, model, valueSize, ctx);
        Audit(h, ctx, root);
        return shape;
    }

    private static BTreeChecker.Shape CheckContents(MetadataHarness h, ulong root, SortedDictionary<ulong, byte[]> model, int valueSize, string ctx)
    {
        using var expected = model.GetEnumerator();
        long seen = 0;
        var shape = BTreeChecker.Check(h, root, valueSize, ctx, (k, v) =>
        {
            Assert.True(expected.MoveNext(), $"{ctx}: tree has extra key {k}");
            Assert.True(expected.Current.Key == k, $"{ctx}: tree has key {k} where the model has {expected.Current.Key}");
            Assert.True(v.SequenceEqual(expected.Current.Value), $"{ctx}: key {k} has the wrong value");
            seen++;
        });
        Assert.True(seen == model.Count, $"{ctx}: tree has {seen} entries, model {model.Count}");
        return shape;
    }

    private static void Audit(MetadataHarness h, string ctx, params ulong[] roots)
    {
        var audit = new RefCountAudit();
        audit.AddMetadataSpaceMap(h);
        foreach (ulong r in roots)
            audit.AddTree(h, r);
        audit.Verify(h.Sm, ctx);
    }
}
