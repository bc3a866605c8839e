using System.Buffers.Binary;
using BackupAppliance.Core;
using BackupAppliance.PersistentData.Tests.Support;

namespace BackupAppliance.PersistentData.Tests;

/// <summary>
/// Space maps: 2-bit counts with the overflow tree, persistence across commit and reopen, the
/// kernel's allocation rule (free in both the committed and the current state), exhaustion, and the
/// disk space map's multi-bitmap index and growth.
/// </summary>
public class SpaceMapTests
{
    [Fact]
    public void Counts_0_to_5_survive_commit_and_reopen_with_3_and_more_in_the_overflow_tree()
    {
        using var h = new MetadataHarness();
        var blocks = new ulong[6];
        for (int i = 0; i < blocks.Length; i++)
        {
            blocks[i] = h.Sm.Allocate();
            SetByIncDec(h.Sm, blocks[i], (uint)i);
        }
        h.Commit();
        h.Reopen();
        for (int i = 0; i < blocks.Length; i++)
            Assert.Equal((uint)i, h.Sm.Count(blocks[i]));
        AssertOnDisk(h, blocks, new uint[] { 0, 1, 2, 3, 4, 5 });

        // 5 → 2 leaves the overflow tree; 3 → 4 stays in it; 1 → 3 enters it.
        SetByIncDec(h.Sm, blocks[5], 2);
        SetByIncDec(h.Sm, blocks[3], 4);
        SetByIncDec(h.Sm, blocks[1], 3);
        h.Commit();
        h.Reopen();
        // blocks[0] is free, so the commit may have taken it for a shadow: it is left out from here on.
        var kept = blocks[1..];
        var expected = new uint[] { 3, 2, 4, 4, 2 };
        for (int i = 0; i < kept.Length; i++)
            Assert.Equal(expected[i], h.Sm.Count(kept[i]));
        AssertOnDisk(h, kept, expected);

        // Large counts too.
        SetByIncDec(h.Sm, blocks[2], 1000);
        h.Commit();
        h.Reopen();
        Assert.Equal(1000u, h.Sm.Count(blocks[2]));
    }

    [Fact]
    public void Bitmap_entries_keep_the_high_bit_first_as_thin_restore_writes_them()
    {
        // FORMATS.md §3.1: blocks 0-7 and 9-11 in use, 8 free → word 0 = 0x00A8AAAA.
        var bm = new byte[BlockChecksum.BlockSize];
        for (int e = 0; e < 12; e++)
            SpaceMapBitmap.Set(bm, e, e == 8 ? 0u : 1u);
        Assert.Equal(0x00A8AAAAUL, BinaryPrimitives.ReadUInt64LittleEndian(bm.AsSpan(16)));
        SpaceMapBitmap.Set(bm, 0, 2); // count 2 = high bit only = bit 2k
        Assert.Equal(0x00A8AAA9UL, BinaryPrimitives.ReadUInt64LittleEndian(bm.AsSpan(16)));
        SpaceMapBitmap.Set(bm, 0, 3);
        Assert.Equal(0x00A8AAABUL, BinaryPrimitives.ReadUInt64LittleEndian(bm.AsSpan(16)));
        Assert.Equal(3u, SpaceMapBitmap.Get(bm, 0));
        Assert.Equal(8, SpaceMapBitmap.FindFree(bm, 0, 100));
        Assert.Equal(100 - 11, SpaceMapBitmap.CountFree(bm, 100));
    }

    [Fact]
    public void Blocks_freed_in_a_transaction_are_not_reused_before_the_commit()
    {
        using var h = new MetadataHarness(64 * 4096);
        h.Commit();
        var freed = new HashSet<ulong>();
        for (int i = 0; i < 10; i++)
            freed.Add(h.Sm.Allocate());
        h.Commit();

        foreach (ulong b in freed)
            h.Sm.Dec(b);
        var got = AllocateAll(h.Sm);
        Assert.Empty(got.Intersect(freed));
        Assert.Equal(0ul, h.Sm.NrFree - (ulong)freed.Count);

        // Blocks both allocated and freed in this transaction were never committed: reusable at once.
        foreach (ulong b in got)
            h.Sm.Dec(b);
        var again = AllocateAll(h.Sm);
        Assert.Equal(got.Order(), again.Order());
        foreach (ulong b in again)
            h.Sm.Dec(b);

        h.Commit();
        var after = AllocateAll(h.Sm);
        Assert.Subset(after.ToHashSet(), freed);
    }

    [Fact]
    public void Allocating_until_exhaustion_throws_SpaceExhaustedException()
    {
        using var h = new MetadataHarness(40 * 4096);
        h.Commit();
        ulong free = h.Sm.NrFree;
        var got = new HashSet<ulong>();
        void Drain()
        {
            while (true)
                Assert.True(got.Add(h.Sm.Allocate()), "a block was handed out twice");
        }
        var e = Assert.Throws<SpaceExhaustedException>(Drain);
        Assert.Equal((ulong)got.Count, free);
        Assert.Equal(40ul, e.NrBlocks);
        Assert.Equal(0ul, h.Sm.NrFree);
        Assert.DoesNotContain(0ul, got);
    }

    [Fact]
    public void Disk_space_map_with_several_bitmaps_round_trips_counts_and_grows()
    {
        const int seed = 5150;
        const ulong nrData = 50_000; // 4 bitmaps of 16320 entries, the last partly used
        var rng = new Random(seed);
        using var h = new MetadataHarness();
        var dsm = DiskSpaceMap.Create(h.Tm, nrData);
        var model = new Dictionary<ulong, uint>();
        for (int i = 0; i < 4000; i++)
        {
            ulong b = (ulong)rng.NextInt64(0, (long)nrData);
            uint c = (uint)rng.Next(0, 6);
            SetByIncDec(dsm, b, c);
            model[b] = c;
        }
        for (int i = 0; i < 500; i++)
            model[dsm.Allocate()] = 1;
        var root = CommitBoth(h, dsm);
        CheckDisk(h, root, model, nrData, $"seed {seed}, first commit");

        h.Reopen();
        dsm = DiskSpaceMap.Open(h.Tm, root);
        Assert.Equal(nrData, dsm.NrBlocks);
        AssertCounts(dsm, model, $"seed {seed}, reopened");

        // Grow to 6 bitmaps; the new range is free and allocatable.
        const ulong grown = 90_000;
        dsm.Extend(grown);
        Assert.Equal(grown, dsm.NrBlocks);
        Assert.Equal(grown - (ulong)model.Count(kv => kv.Value > 0), dsm.NrFree);
        for (ulong b = nrData; b < grown; b += 997)
        {
            uint c = (uint)rng.Next(1, 6);
            SetByIncDec(dsm, b, c);
            model[b] = c;
        }
        SetByIncDec(dsm, grown - 1, 4);
        model[grown - 1] = 4;
        root = CommitBoth(h, dsm);
        h.Reopen();
        dsm = DiskSpaceMap.Open(h.Tm, root);
        Assert.Equal(grown, dsm.NrBlocks);
        AssertCounts(dsm, model, $"seed {seed}, after growing");
        CheckDisk(h, root, model, grown, $"seed {seed}, after growing");
    }

    [Fact]
    public void Freed_data_blocks_are_not_reused_before_the_commit()
    {
        using var h = new MetadataHarness();
        var dsm = DiskSpaceMap.Create(h.Tm, 100);
        var first = new List<ulong>();
        for (int i = 0; i < 100; i++)
            first.Add(dsm.Allocate());
        CommitBoth(h, dsm);
        foreach (ulong b in first.Take(30))
            dsm.Dec(b);
        Assert.Throws<SpaceExhaustedException>(() => dsm.Allocate());
        CommitBoth(h, dsm);
        var after = new HashSet<ulong>();
        for (int i = 0; i < 30; i++)
            after.Add(dsm.Allocate());
        Assert.Equal(first.Take(30).ToHashSet(), after);
    }

    [Fact]
    public void Metadata_space_map_extends_into_a_second_bitmap()
    {
        using var h = new MetadataHarness(4096L * 4096);
        h.Commit();
        const ulong grown = 20_000;
        h.Bm.SetNrBlocks(grown);
        h.Sm.Extend(grown);
        var got = new List<ulong>();
        while (got.Count < 17_000)
            got.Add(h.Sm.Allocate());
        Assert.Contains(got, b => b >= SpaceMap.EntriesPerBitmap);
        h.Commit();
        h.Reopen();
        Assert.Equal(grown, h.Sm.NrBlocks);
        foreach (ulong b in got)
            Assert.Equal(1u, h.Sm.Count(b));
        var audit = new RefCountAudit();
        audit.AddMetadataSpaceMap(h);
        foreach (ulong b in got)
            audit.Reference(b);
        audit.Verify(h.Sm, "after extending the metadata space map");
    }

    [Fact]
    public void Metadata_space_map_refuses_to_grow_past_its_255_index_entries()
    {
        // The index block holds 255 entries (FORMATS.md §3.4); the kernel's sm_ll_extend refuses more
        // ("space map too large", -EINVAL) instead of failing later, half way through a commit.
        using var h = new MetadataHarness();
        h.Commit();
        Assert.Throws<InvalidOperationException>(() => h.Sm.Extend(MetadataSpaceMap.MaxBlocks + 1));
        Assert.Equal(4096ul, h.Sm.NrBlocks);
        h.Sm.Extend(MetadataSpaceMap.MaxBlocks);
        var root = h.Commit();
        Assert.Equal(MetadataSpaceMap.MaxBlocks, root.NrBlocks);
        var index = h.ReadRaw(root.BitmapRoot);
        Assert.NotEqual(0ul, IndexEntry.Read(index.AsSpan(16 + IndexEntry.Size * 254)).BlockNr);
    }

    private static void SetByIncDec(SpaceMap sm, ulong b, uint target)
    {
        while (sm.Count(b) < target)
            sm.Inc(b);
        while (sm.Count(b) > target)
            sm.Dec(b);
    }

    private static List<ulong> AllocateAll(SpaceMap sm)
    {
        var got = new List<ulong>();
        try
        {
            while (true)
                got.Add(sm.Allocate());
        }
        catch (SpaceExhaustedException)
        {
        }
        return got;
    }

    private static SpaceMapRoot CommitBoth(MetadataHarness h, DiskSpaceMap dsm)
    {
        SpaceMapRoot root = default;
        h.Commit(before: () => root = dsm.Commit(), after: dsm.OnCommitted);
        return root;
    }

    private static void AssertCounts(SpaceMap sm, Dictionary<ulong, uint> model, string ctx)
    {
        for (ulong b = 0; b < sm.NrBlocks; b++)
        {
            uint want = model.GetValueOrDefault(b);
            uint got = sm.Count(b);
            Assert.True(want == got, $"{ctx}: block {b} has count {got}, expected {want}");
        }
        Assert.Equal((ulong)model.Count(kv => kv.Value > 0), sm.NrAllocated);
    }

    /// <summary>The metadata space map's own counts on disk: 2-bit entries, and the overflow tree holding exactly the counts ≥ 3.</summary>
    private static void AssertOnDisk(MetadataHarness h, ulong[] blocks, uint[] counts)
    {
        var index = h.ReadRaw(h.SmRoot.BitmapRoot);
        var overflow = ReadOverflow(h, h.SmRoot.RefCountRoot);
        for (int i = 0; i < blocks.Length; i++)
        {
            ulong b = blocks[i];
            var entry = IndexEntry.Read(index.AsSpan(16 + IndexEntry.Size * (int)(b / SpaceMap.EntriesPerBitmap)));
            uint bits = SpaceMapBitmap.Get(h.ReadRaw(entry.BlockNr), (int)(b % SpaceMap.EntriesPerBitmap));
            Assert.Equal(Math.Min(counts[i], 3u), bits);
            if (counts[i] >= 3)
                Assert.Equal(counts[i], overflow[b]);
            else
                Assert.False(overflow.ContainsKey(b), $"block {b} with count {counts[i]} is in the overflow tree");
        }
    }

    private static Dictionary<ulong, uint> ReadOverflow(MetadataHarness h, ulong root)
    {
        var entries = new Dictionary<ulong, uint>();
        BTreeChecker.Check(h, root, 4, "overflow tree", (k, v) => entries[k] = BinaryPrimitives.ReadUInt32LittleEndian(v));
        return entries;
    }

    /// <summary>
    /// The disk space map as written: index tree entries name valid bitmaps holding min(count, 3), the
    /// overflow tree holds counts ≥ 3, nr_free is exact; and all metadata blocks are accounted for.
    /// </summary>
    private static void CheckDisk(MetadataHarness h, SpaceMapRoot root, Dictionary<ulong, uint> model, ulong nrData, string ctx)
    {
        var index = new Dictionary<ulong, IndexEntry>();
        BTreeChecker.Check(h, root.BitmapRoot, IndexEntry.Size, ctx + ", index tree", (k, v) => index[k] = IndexEntry.Read(v));
        int nrBitmaps = SpaceMap.NrBitmaps(nrData);
        Assert.Equal(Enumerable.Range(0, nrBitmaps).Select(i => (ulong)i), index.Keys.Order());
        var overflow = ReadOverflow(h, root.RefCountRoot);
        for (int i = 0; i < nrBitmaps; i++)
        {
            var bm = h.ReadRaw(index[(ulong)i].BlockNr);
            Assert.Null(BlockChecksum.Problem(bm, index[(ulong)i].BlockNr, BlockKind.Bitmap));
            ulong first = (ulong)i * SpaceMap.EntriesPerBitmap;
            int entries = (int)Math.Min(SpaceMap.EntriesPerBitmap, nrData - first);
            int free = 0;
            for (int e = 0; e < entries; e++)
            {
                uint want = model.GetValueOrDefault(first + (ulong)e);
                Assert.True(Math.Min(want, 3u) == SpaceMapBitmap.Get(bm, e), $"{ctx}: bitmap entry for data block {first + (ulong)e}");
                if (want >= 3)
                    Assert.Equal(want, overflow[first + (ulong)e]);
                if (want == 0)
                    free++;
            }
            Assert.True(index[(ulong)i].NrFree == (uint)free, $"{ctx}: bitmap {i} nr_free {index[(ulong)i].NrFree}, counted {free}");
        }
        Assert.Equal(model.Count(kv => kv.Value >= 3), overflow.Count);

        var audit = new RefCountAudit();
        audit.AddMetadataSpaceMap(h);
        audit.AddTree(h, root.BitmapRoot);
        foreach (var e in index.Values)
            audit.Reference(e.BlockNr);
        audit.AddTree(h, root.RefCountRoot);
        audit.Verify(h.Sm, ctx + ", metadata blocks");
    }
}
