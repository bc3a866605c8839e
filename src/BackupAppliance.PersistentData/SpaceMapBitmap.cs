using System.Buffers.Binary;
using System.Numerics;

namespace BackupAppliance.PersistentData;

/// <summary>
/// The 2-bit reference-count entries of a space-map bitmap block (dm-space-map-common):
/// 16 bytes of header, then 16320 entries packed 32 to a little-endian u64. Within an entry
/// bit 2k is the HIGH bit and bit 2k+1 the LOW bit.
/// </summary>
public static class SpaceMapBitmap
{
    public const int HeaderSize = 16;
    public const int EntriesPerBlock = (BlockChecksum.BlockSize - HeaderSize) * 4; // 16320
    private const int WordsPerBlock = EntriesPerBlock / 32;

    public static uint Get(ReadOnlySpan<byte> bitmap, int entry)
    {
        ulong w = BinaryPrimitives.ReadUInt64LittleEndian(bitmap[(HeaderSize + 8 * (entry >> 5))..]);
        int shift = (entry & 31) * 2;
        return (uint)((((w >> shift) & 1) << 1) | ((w >> (shift + 1)) & 1));
    }

    public static void Set(Span<byte> bitmap, int entry, uint count)
    {
        var slot = bitmap[(HeaderSize + 8 * (entry >> 5))..];
        ulong w = BinaryPrimitives.ReadUInt64LittleEndian(slot);
        int shift = (entry & 31) * 2;
        w &= ~(3UL << shift);
        w |= (ulong)((count >> 1) & 1) << shift;
        w |= (ulong)(count & 1) << (shift + 1);
        BinaryPrimitives.WriteUInt64LittleEndian(slot, w);
    }

    /// <summary>Index of the first zero entry at or after <paramref name="from"/> and before <paramref name="end"/>, or -1.</summary>
    public static int FindFree(ReadOnlySpan<byte> bitmap, int from, int end)
    {
        for (int word = from >> 5; word < WordsPerBlock && word * 32 < end; word++)
        {
            ulong w = BinaryPrimitives.ReadUInt64LittleEndian(bitmap[(HeaderSize + 8 * word)..]);
            ulong used = (w | (w >> 1)) & 0x5555555555555555UL;
            ulong free = ~used & 0x5555555555555555UL;
            if (word == from >> 5)
                free &= ~0UL << ((from & 31) * 2);
            if (free == 0)
                continue;
            int entry = word * 32 + BitOperations.TrailingZeroCount(free) / 2;
            return entry < end ? entry : -1;
        }
        return -1;
    }

    /// <summary>Number of zero entries among the first <paramref name="entries"/>.</summary>
    public static int CountFree(ReadOnlySpan<byte> bitmap, int entries)
    {
        int free = 0;
        int fullWords = entries >> 5;
        for (int word = 0; word < fullWords; word++)
        {
            ulong w = BinaryPrimitives.ReadUInt64LittleEndian(bitmap[(HeaderSize + 8 * word)..]);
            ulong used = (w | (w >> 1)) & 0x5555555555555555UL;
            free += 32 - BitOperations.PopCount(used);
        }
        for (int e = fullWords * 32; e < entries; e++)
            if (Get(bitmap, e) == 0)
                free++;
        return free;
    }
}
