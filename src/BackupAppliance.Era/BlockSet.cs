using System.Numerics;

namespace BackupAppliance.Era;

/// <summary>
/// A sparse set of block numbers kept as 64-bit words by word index, so its cost follows the blocks
/// added rather than the volume size. Emits maximal runs of consecutive blocks in ascending order.
/// </summary>
public sealed class BlockSet
{
    private readonly Dictionary<uint, ulong> _words = new();

    public bool IsEmpty => _words.Count == 0;

    /// <summary>ORs <paramref name="bits"/> into word <paramref name="word"/> (blocks word*64 … word*64+63).</summary>
    public void AddWord(uint word, ulong bits)
    {
        if (bits == 0)
            return;
        _words[word] = _words.TryGetValue(word, out ulong w) ? w | bits : bits;
    }

    public void Add(uint block) => AddWord(block >> 6, 1UL << (int)(block & 63));

    /// <summary>Adds blocks [<paramref name="first"/>, <paramref name="end"/>).</summary>
    public void AddRange(uint first, uint end)
    {
        while (first < end)
        {
            int bit = (int)(first & 63);
            uint span = Math.Min(end - first, 64u - (uint)bit);
            ulong mask = span == 64 ? ulong.MaxValue : ((1UL << (int)span) - 1) << bit;
            AddWord(first >> 6, mask);
            first += span;
        }
    }

    /// <summary>Calls <paramref name="run"/>(first, endExclusive) for each maximal run, ascending.</summary>
    public void EmitRuns(Action<uint, uint> run)
    {
        var keys = new uint[_words.Count];
        _words.Keys.CopyTo(keys, 0);
        Array.Sort(keys);
        ulong start = 0, end = 0;
        bool open = false;
        foreach (uint k in keys)
        {
            ulong w = _words[k];
            ulong wordBase = (ulong)k << 6;
            while (w != 0)
            {
                int lo = BitOperations.TrailingZeroCount(w);
                int len = BitOperations.TrailingZeroCount(~(w >> lo));
                if (lo + len > 64)
                    len = 64 - lo;
                ulong s = wordBase + (ulong)lo, e = s + (ulong)len;
                if (open && s == end)
                {
                    end = e;
                }
                else
                {
                    if (open)
                        run((uint)start, (uint)end);
                    start = s;
                    end = e;
                    open = true;
                }
                w = len == 64 ? 0 : w & ~(((1UL << len) - 1) << lo);
            }
        }
        if (open)
            run((uint)start, (uint)end);
    }
}
