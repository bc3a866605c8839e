using System.Buffers.Binary;
using System.Numerics;
using BackupAppliance.Core;

namespace BackupAppliance.PersistentData;

/// <summary>
/// dm-bitset (dm-bitset.c): N bits as a dm-array of ceil(N/64) little-endian u64 words; bit i is bit
/// i % 64 (LSB first) of word i / 64, and bits at or past N in the last word are always 0. The array
/// does not record N, so <see cref="Resize"/> takes the old size from the caller, like the kernel.
/// Unlike the kernel there is no one-word write cache (current_bits): every change goes straight to
/// the array, so nothing needs flushing before a commit.
/// </summary>
public sealed class Bitset
{
    public const int BitsPerWord = 64;

    private readonly ArrayTree _words;

    public Bitset(TransactionManager tm) => _words = new ArrayTree(tm, sizeof(ulong));

    /// <summary>The underlying array of words.</summary>
    public ArrayTree Words => _words;

    public static ulong WordsFor(ulong nrBits) => (nrBits + BitsPerWord - 1) / BitsPerWord;

    /// <summary>A new bitset of <paramref name="nrBits"/> bits, all <paramref name="value"/>.</summary>
    public ulong Create(ulong nrBits, bool value = false)
    {
        ulong root = _words.CreateEmpty();
        Resize(ref root, 0, nrBits, value);
        return root;
    }

    public bool Test(ulong root, ulong bit) => ((GetWord(root, bit / BitsPerWord) >> (int)(bit % BitsPerWord)) & 1) != 0;

    public void Set(ref ulong root, ulong bit) => Change(ref root, bit, true);

    public void Clear(ref ulong root, ulong bit) => Change(ref root, bit, false);

    public ulong GetWord(ulong root, ulong word)
    {
        Span<byte> v = stackalloc byte[sizeof(ulong)];
        _words.Get(root, word, v);
        return BinaryPrimitives.ReadUInt64LittleEndian(v);
    }

    public void SetWord(ref ulong root, ulong word, ulong bits)
    {
        Span<byte> v = stackalloc byte[sizeof(ulong)];
        BinaryPrimitives.WriteUInt64LittleEndian(v, bits);
        _words.Set(ref root, word, v);
    }

    /// <summary>
    /// Grows or shrinks from <paramref name="oldNrBits"/> to <paramref name="newNrBits"/>; new bits are
    /// <paramref name="value"/>, and bits past the new end are cleared.
    /// </summary>
    public void Resize(ref ulong root, ulong oldNrBits, ulong newNrBits, bool value = false)
    {
        ulong have = _words.Length(root);
        if (have != WordsFor(oldNrBits))
            throw new CorruptMetadataException(root, $"bitset of {oldNrBits} bits should have {WordsFor(oldNrBits)} words, its array has {have}");
        Span<byte> fill = stackalloc byte[sizeof(ulong)];
        BinaryPrimitives.WriteUInt64LittleEndian(fill, value ? ulong.MaxValue : 0);
        _words.Resize(ref root, WordsFor(newNrBits), fill);

        if (value && newNrBits > oldNrBits && oldNrBits % BitsPerWord != 0)
        {
            // The old last word gains set bits above the old end (trimmed to the new end below).
            ulong word = oldNrBits / BitsPerWord;
            SetWord(ref root, word, GetWord(root, word) | (ulong.MaxValue << (int)(oldNrBits % BitsPerWord)));
        }
        if (newNrBits % BitsPerWord != 0)
        {
            ulong last = newNrBits / BitsPerWord;
            ulong keep = (1UL << (int)(newNrBits % BitsPerWord)) - 1;
            ulong w = GetWord(root, last);
            if ((w & ~keep) != 0)
                SetWord(ref root, last, w & keep);
        }
    }

    /// <summary>Calls <paramref name="visit"/> with the index of every set bit, in order.</summary>
    public void WalkSetBits(ulong root, Action<ulong> visit)
    {
        _words.VisitBlocks(root, (firstWord, values) =>
        {
            for (int i = 0; i * sizeof(ulong) < values.Length; i++)
            {
                ulong w = BinaryPrimitives.ReadUInt64LittleEndian(values[(i * sizeof(ulong))..]);
                ulong bitBase = (firstWord + (ulong)i) * BitsPerWord;
                while (w != 0)
                {
                    visit(bitBase + (ulong)BitOperations.TrailingZeroCount(w));
                    w &= w - 1;
                }
            }
        });
    }

    public ulong CountSetBits(ulong root)
    {
        ulong count = 0;
        _words.VisitBlocks(root, (_, values) =>
        {
            for (int off = 0; off < values.Length; off += sizeof(ulong))
                count += (ulong)BitOperations.PopCount(BinaryPrimitives.ReadUInt64LittleEndian(values[off..]));
        });
        return count;
    }

    /// <summary>Drops this bitset's reference; blocks nobody else holds are freed.</summary>
    public void Delete(ulong root) => _words.Delete(root);

    private void Change(ref ulong root, ulong bit, bool value)
    {
        ulong word = bit / BitsPerWord;
        ulong mask = 1UL << (int)(bit % BitsPerWord);
        ulong w = GetWord(root, word);
        ulong changed = value ? w | mask : w & ~mask;
        if (changed != w)
            SetWord(ref root, word, changed);
    }
}
