using System.Buffers.Binary;
using System.Collections;
using BackupAppliance.Core;
using BackupAppliance.PersistentData.Tests.Support;

namespace BackupAppliance.PersistentData.Tests;

/// <summary>dm-bitset against a BitArray model, and the era writeset layout observed from era_restore.</summary>
public class BitsetTests
{
    [Fact]
    public void Era_writeset_word_matches_the_oracle()
    {
        // FORMATS.md §6.2: an era writeset with bits {10,11,12,50} → word 0 = 0x0004000000001C00.
        using var h = new MetadataHarness();
        var bits = new Bitset(h.Tm);
        ulong root = bits.Create(100);
        foreach (ulong b in new ulong[] { 10, 11, 12, 50 })
            bits.Set(ref root, b);
        Assert.Equal(0x0004000000001C00UL, bits.GetWord(root, 0));
        Assert.Equal(0UL, bits.GetWord(root, 1));
        h.Commit();

        var (values, blocks) = ArrayChecker.Check(h, root, 8, 2, "era writeset");
        Assert.Single(blocks);
        Assert.Equal(0x0004000000001C00UL, BinaryPrimitives.ReadUInt64LittleEndian(values[0]));
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(values[1]));
        var d = h.ReadRaw(blocks[0]);
        Assert.Equal(509u, BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(4)));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(8)));
        Assert.Equal(8u, BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(12)));

        h.Reopen();
        bits = new Bitset(h.Tm);
        Assert.Equal(4ul, bits.CountSetBits(root));
        var set = new List<ulong>();
        bits.WalkSetBits(root, set.Add);
        Assert.Equal(new ulong[] { 10, 11, 12, 50 }, set);
        Assert.True(bits.Test(root, 50));
        Assert.False(bits.Test(root, 49));
    }

    [Fact]
    public void Random_sets_clears_and_resizes_match_a_BitArray()
    {
        const int seed = 6401;
        const int perBlock = 509 * 64; // bits per array block
        var rng = new Random(seed);
        using var h = new MetadataHarness();
        h.Commit();
        ulong baseline = h.Sm.NrAllocated;
        var bits = new Bitset(h.Tm);
        int n = 3 * perBlock + 100;
        ulong root = bits.Create((ulong)n);
        var model = new BitArray(n);

        (int size, bool value)[] steps =
        {
            (perBlock, true), (perBlock - 1, false), (perBlock + 1, true), (perBlock + 64, true), (65, false),
            (64, true), (63, true), (0, false), (4 * perBlock + 3, true), (2 * perBlock + 30, false),
            (2 * perBlock + 40, true), (2 * perBlock + 100, false), (5 * perBlock, true),
        };
        for (int step = 0; step <= steps.Length; step++)
        {
            string ctx = $"seed {seed}, step {step}";
            for (int i = 0; i < 1500 && model.Length > 0; i++)
            {
                int b = rng.Next(model.Length);
                if (rng.Next(3) == 0)
                {
                    bits.Clear(ref root, (ulong)b);
                    model[b] = false;
                }
                else
                {
                    bits.Set(ref root, (ulong)b);
                    model[b] = true;
                }
            }
            Verify(bits, root, model, rng, ctx);
            if (step % 3 == 0)
            {
                h.Commit();
                h.Reopen();
                bits = new Bitset(h.Tm);
                Verify(bits, root, model, rng, ctx + ", reopened");
            }
            if (step == steps.Length)
                break;

            var (size, value) = steps[step];
            int old = model.Length;
            bits.Resize(ref root, (ulong)old, (ulong)size, value);
            model.Length = size;
            for (int i = old; i < size; i++)
                model[i] = value;
            Verify(bits, root, model, rng, $"{ctx}, resized {old} → {size} with {value}");
        }

        h.Commit();
        var audit = new RefCountAudit();
        audit.AddMetadataSpaceMap(h);
        audit.AddTree(h, root, valuesAreBlocks: true);
        audit.Verify(h.Sm, $"seed {seed}, final");

        bits.Delete(root);
        h.Commit();
        Assert.Equal(baseline, h.Sm.NrAllocated);
    }

    [Fact]
    public void Resize_with_the_wrong_old_size_is_refused()
    {
        using var h = new MetadataHarness();
        var bits = new Bitset(h.Tm);
        ulong root = bits.Create(1000);
        Assert.Throws<CorruptMetadataException>(() => bits.Resize(ref root, 2000, 3000));
        bits.Resize(ref root, 970, 3000); // 970 bits also take 16 words
        Assert.Equal(47ul, bits.Words.Length(root));
    }

    private static void Verify(Bitset bits, ulong root, BitArray model, Random rng, string ctx)
    {
        int n = model.Length;
        Assert.True(bits.Words.Length(root) == Bitset.WordsFor((ulong)n), $"{ctx}: {bits.Words.Length(root)} words for {n} bits");
        for (int i = 0; i < Math.Min(n, 300); i++)
        {
            int b = rng.Next(n);
            Assert.True(bits.Test(root, (ulong)b) == model[b], $"{ctx}: bit {b}");
        }
        var set = new List<ulong>();
        bits.WalkSetBits(root, set.Add);
        var expected = new List<ulong>();
        for (int i = 0; i < n; i++)
            if (model[i])
                expected.Add((ulong)i);
        Assert.True(expected.SequenceEqual(set), $"{ctx}: set bits differ ({set.Count} walked, {expected.Count} expected)");
        Assert.True(bits.CountSetBits(root) == (ulong)expected.Count, $"{ctx}: count");
        if (n % 64 != 0)
        {
            ulong last = bits.GetWord(root, (ulong)n / 64);
            Assert.True(last >> (n % 64) == 0, $"{ctx}: bits past the end of the last word are set: 0x{last:x16}");
        }
    }
}
