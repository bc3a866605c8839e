using System.Buffers.Binary;
using BackupAppliance.Core;
using BackupAppliance.PersistentData.Tests.Support;

namespace BackupAppliance.PersistentData.Tests;

/// <summary>
/// dm-array against a plain list: random writes, resizes across block boundaries (1018 u32 or 509 u64
/// per block), commit and reopen, sharing, deletion, and corrupt blocks.
/// </summary>
public class ArrayTreeTests
{
    [Theory]
    [InlineData(4, 1018, 71)]
    [InlineData(8, 509, 72)]
    public void Random_writes_and_resizes_match_a_plain_array(int valueSize, int perBlock, int seed)
    {
        using var h = new MetadataHarness();
        h.Commit();
        ulong baseline = h.Sm.NrAllocated;
        var rng = new Random(seed);
        var array = new ArrayTree(h.Tm, valueSize);
        Assert.Equal(perBlock, array.EntriesPerBlock);
        ulong mask = valueSize == 8 ? ulong.MaxValue : uint.MaxValue;
        string ctx = $"seed {seed}, value size {valueSize}";

        ulong fill = RandomValue(rng, mask);
        ulong root = array.Create((ulong)(3 * perBlock + 5), Bytes(fill, valueSize));
        var model = Enumerable.Repeat(fill, 3 * perBlock + 5).ToList();
        RandomWrites(array, ref root, model, rng, mask, 300, ctx + ", initial");
        Verify(array, root, model, rng, ctx + ", initial");

        int[] sizes =
        {
            3 * perBlock, perBlock - 1, perBlock, perBlock + 1, 0, 5 * perBlock + 7, 5 * perBlock + 6,
            2 * perBlock + 3, 2 * perBlock + 3, 7 * perBlock, 1, 2 * perBlock - 1, 4 * perBlock + 1,
        };
        for (int step = 0; step < sizes.Length; step++)
        {
            string sctx = $"{ctx}, step {step} ({model.Count} → {sizes[step]})";
            fill = RandomValue(rng, mask);
            int oldCount = model.Count;
            array.Resize(ref root, (ulong)sizes[step], Bytes(fill, valueSize));
            if (sizes[step] < model.Count)
                model.RemoveRange(sizes[step], model.Count - sizes[step]);
            else
                model.AddRange(Enumerable.Repeat(fill, sizes[step] - model.Count));
            Verify(array, root, model, rng, sctx + ", resized");

            h.Commit();
            var (_, blocks) = CheckRaw(h, root, model, valueSize, sctx);
            if (oldCount == 0 && model.Count > 2 * perBlock)
            {
                // Like the kernel, the whole blocks added by one resize are one shared block.
                Assert.Equal(2, blocks.Distinct().Count());
                Assert.Equal((uint)(model.Count / perBlock), h.Sm.Count(blocks[0]));
            }
            Audit(h, sctx, root);

            RandomWrites(array, ref root, model, rng, mask, 200, sctx);
            if (step % 2 == 0)
            {
                h.Commit();
                h.Reopen();
                array = new ArrayTree(h.Tm, valueSize);
            }
            Verify(array, root, model, rng, sctx + ", written");
            h.Commit();
            CheckRaw(h, root, model, valueSize, sctx + ", written");
            Audit(h, sctx + ", written", root);
        }

        array.Delete(root);
        h.Commit();
        Audit(h, ctx + ", deleted");
        Assert.Equal(baseline, h.Sm.NrAllocated);
    }

    [Theory]
    [InlineData(false, 81)]
    [InlineData(true, 82)]
    public void Array_shared_by_two_roots_is_copied_on_write(bool commitBeforeSharing, int seed)
    {
        using var h = new MetadataHarness();
        h.Commit();
        ulong baseline = h.Sm.NrAllocated;
        var rng = new Random(seed);
        var array = new ArrayTree(h.Tm, 4);
        string ctx = $"seed {seed}";
        ulong root = array.Create(3000, Bytes(7, 4));
        var original = Enumerable.Repeat(7UL, 3000).ToList();
        RandomWrites(array, ref root, original, rng, uint.MaxValue, 100, ctx);
        if (commitBeforeSharing)
            h.Commit();

        h.Tm.Inc(root);
        ulong r1 = root, r2 = root;
        var m1 = new List<ulong>(original);
        RandomWrites(array, ref r1, m1, rng, uint.MaxValue, 500, ctx + ", via r1");
        Verify(array, r2, original, rng, ctx + ", r2 after writes via r1");
        Verify(array, r1, m1, rng, ctx + ", r1");
        h.Commit();
        CheckRaw(h, r1, m1, 4, ctx + ", r1");
        CheckRaw(h, r2, original, 4, ctx + ", r2");
        Audit(h, ctx + ", both", r1, r2);

        array.Resize(ref r1, 1500, Bytes(0, 4));
        m1.RemoveRange(1500, m1.Count - 1500);
        array.Resize(ref r1, 5000, Bytes(9, 4));
        m1.AddRange(Enumerable.Repeat(9UL, 3500));
        Verify(array, r1, m1, rng, ctx + ", r1 resized");
        Verify(array, r2, original, rng, ctx + ", r2 after r1 resized");
        h.Commit();
        Audit(h, ctx + ", both after resize", r1, r2);

        array.Delete(r1);
        h.Commit();
        CheckRaw(h, r2, original, 4, ctx + ", r2 after deleting r1");
        Audit(h, ctx + ", r2 alone", r2);
        array.Delete(r2);
        h.Commit();
        Audit(h, ctx + ", none");
        Assert.Equal(baseline, h.Sm.NrAllocated);
    }

    [Fact]
    public void Era_array_layout_matches_era_restore()
    {
        // FORMATS.md §11.2: an era array of 100 entries is one array block {max 1018, nr 100, vsize 4}.
        using var h = new MetadataHarness();
        var array = new ArrayTree(h.Tm, 4);
        ulong root = array.Create(100, Bytes(0, 4));
        array.Set(ref root, 99, Bytes(0xDEADBEEF, 4));
        h.Commit();
        var rootNode = h.ReadRaw(root);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(rootNode.AsSpan(16)));
        ulong block = BinaryPrimitives.ReadUInt64LittleEndian(rootNode.AsSpan(32 + 8 * 252));
        var d = h.ReadRaw(block);
        Assert.Equal(1018u, BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(4)));
        Assert.Equal(100u, BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(8)));
        Assert.Equal(4u, BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(12)));
        Assert.Equal(block, BinaryPrimitives.ReadUInt64LittleEndian(d.AsSpan(16)));
        Assert.Equal(0xDEADBEEFu, BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(24 + 4 * 99)));
        Assert.Equal(BlockChecksum.Compute(d, BlockKinds.Salt(BlockKind.ArrayBlock)), BlockChecksum.Stored(d));
    }

    [Fact]
    public void Bad_indexes_and_value_sizes_are_argument_errors()
    {
        using var h = new MetadataHarness();
        var array = new ArrayTree(h.Tm, 4);
        ulong root = array.Create(1020, Bytes(1, 4));
        var buf = new byte[4];
        Assert.Throws<ArgumentOutOfRangeException>(() => array.Get(root, 1020, buf));
        Assert.Throws<ArgumentOutOfRangeException>(() => array.Get(root, 5000, buf));
        Assert.Throws<ArgumentOutOfRangeException>(() => array.Set(ref root, 1020, buf));
        Assert.Throws<ArgumentException>(() => array.Set(ref root, 0, new byte[8]));
        Assert.Throws<ArgumentException>(() => array.Resize(ref root, 10, new byte[3]));
        ulong empty = array.CreateEmpty();
        Assert.Equal(0ul, array.Length(empty));
        Assert.Throws<ArgumentOutOfRangeException>(() => array.Get(empty, 0, buf));
    }

    [Fact]
    public void Flipped_byte_in_an_array_block_is_reported_with_its_block()
    {
        using var h = new MetadataHarness();
        var array = new ArrayTree(h.Tm, 8);
        ulong root = array.Create(2000, Bytes(3, 8));
        array.Set(ref root, 600, Bytes(4, 8)); // block 1 gets its own copy
        h.Commit();
        var (_, blocks) = ArrayChecker.Check(h, root, 8, 2000, "setup");
        h.CorruptByte(blocks[1], 24 + 8 * 100);
        h.Reopen();
        array = new ArrayTree(h.Tm, 8);
        var buf = new byte[8];
        array.Get(root, 0, buf);
        var e = Assert.Throws<CorruptMetadataException>(() => array.Get(root, 600, buf));
        Assert.Equal(blocks[1], e.Block);
        e = Assert.Throws<CorruptMetadataException>(() => array.Walk(root, (_, _) => { }));
        Assert.Equal(blocks[1], e.Block);
    }

    [Theory]
    [InlineData(12, 4u, "value_size")]     // value_size says u32 in a u64 array
    [InlineData(4, 1018u, "max_entries")]   // max_entries of a u32 array
    [InlineData(8, 510u, "nr_entries")]     // more entries than fit
    public void Array_block_header_that_disagrees_is_corrupt(int offset, uint value, string what)
    {
        using var h = new MetadataHarness();
        var array = new ArrayTree(h.Tm, 8);
        ulong root = array.Create(600, Bytes(3, 8));
        array.Set(ref root, 10, Bytes(4, 8));
        h.Commit();
        var (_, blocks) = ArrayChecker.Check(h, root, 8, 600, "setup");
        var d = h.ReadRaw(blocks[0]);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(offset), value);
        h.WriteSealed(blocks[0], d, BlockKind.ArrayBlock);
        h.Reopen();
        array = new ArrayTree(h.Tm, 8);
        var e = Assert.Throws<CorruptMetadataException>(() => array.Get(root, 10, new byte[8]));
        Assert.Equal(blocks[0], e.Block);
        Assert.Contains(what, e.Problem);
    }

    [Fact]
    public void A_partial_block_before_the_last_is_corrupt()
    {
        using var h = new MetadataHarness();
        var array = new ArrayTree(h.Tm, 8);
        ulong root = array.Create(1200, Bytes(3, 8));
        array.Set(ref root, 10, Bytes(4, 8));
        h.Commit();
        var (_, blocks) = ArrayChecker.Check(h, root, 8, 1200, "setup");
        var d = h.ReadRaw(blocks[0]);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(8), 500);
        h.WriteSealed(blocks[0], d, BlockKind.ArrayBlock);
        h.Reopen();
        array = new ArrayTree(h.Tm, 8);
        var e = Assert.Throws<CorruptMetadataException>(() => array.Walk(root, (_, _) => { }));
        Assert.Equal(blocks[0], e.Block);
        Assert.Contains("not full", e.Problem);
    }

    private static ulong RandomValue(Random rng, ulong mask) => (ulong)rng.NextInt64() & mask;

    private static byte[] Bytes(ulong v, int size)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        return b[..size];
    }

    private static ulong Value(ReadOnlySpan<byte> v) =>
        v.Length == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(v) : BinaryPrimitives.ReadUInt32LittleEndian(v);

    private static void RandomWrites(ArrayTree array, ref ulong root, List<ulong> model, Random rng, ulong mask, int count, string ctx)
    {
        if (model.Count == 0)
            return;
        for (int i = 0; i < count; i++)
        {
            // Favour the edges of blocks, where off-by-one errors live.
            int idx = rng.Next(4) == 0
                ? Math.Min(model.Count - 1, rng.Next(0, model.Count / array.EntriesPerBlock + 1) * array.EntriesPerBlock + rng.Next(-1, 2) + (rng.Next(2) == 0 ? 0 : array.EntriesPerBlock - 1))
                : rng.Next(model.Count);
            idx = Math.Clamp(idx, 0, model.Count - 1);
            ulong v = RandomValue(rng, mask);
            array.Set(ref root, (ulong)idx, Bytes(v, array.ValueSize));
            model[idx] = v;
        }
    }

    private static void Verify(ArrayTree array, ulong root, List<ulong> model, Random rng, string ctx)
    {
        Assert.True(array.Length(root) == (ulong)model.Count, $"{ctx}: length {array.Length(root)}, model {model.Count}");
        var buf = new byte[array.ValueSize];
        for (int i = 0; i < Math.Min(200, model.Count); i++)
        {
            int idx = rng.Next(model.Count);
            array.Get(root, (ulong)idx, buf);
            Assert.True(Value(buf) == model[idx], $"{ctx}: get {idx}");
        }
        ulong next = 0;
        array.Walk(root, (i, v) =>
        {
            Assert.True(i == next, $"{ctx}: walk visited {i} after {next - 1}");
            Assert.True(Value(v) == model[(int)i], $"{ctx}: walk value at {i}: {Value(v)}, model {model[(int)i]}");
            next++;
        });
        Assert.True(next == (ulong)model.Count, $"{ctx}: walk visited {next} of {model.Count}");
        Assert.Throws<ArgumentOutOfRangeException>(() => array.Get(root, (ulong)model.Count, buf));
    }

    private static (List<byte[]>, List<ulong>) CheckRaw(MetadataHarness h, ulong root, List<ulong> model, int valueSize, string ctx)
    {
        var (values, blocks) = ArrayChecker.Check(h, root, valueSize, (ulong)model.Count, ctx);
        for (int i = 0; i < model.Count; i++)
            Assert.True(Value(values[i]) == model[i], $"{ctx}: on-disk value at {i}");
        return (values, blocks);
    }

    private static void Audit(MetadataHarness h, string ctx, params ulong[] roots)
    {
        var audit = new RefCountAudit();
        audit.AddMetadataSpaceMap(h);
        foreach (ulong r in roots)
            audit.AddTree(h, r, valuesAreBlocks: true);
        audit.Verify(h.Sm, ctx);
    }
}
