using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin.Check;

/// <summary>
/// Expected reference counts of data blocks. A pool may have hundreds of millions of data blocks, so
/// counts are bytes in chunks of one bitmap's range (16320 blocks), allocated when a block in the range
/// is first counted; the rare counts of 255 or more spill into a dictionary.
/// </summary>
public sealed class DataBlockCounter : IExpectedCounts
{
    private const int ChunkSize = SpaceMapBitmap.EntriesPerBlock;
    private readonly Dictionary<ulong, byte[]> _chunks = new();
    private readonly Dictionary<ulong, uint> _large = new();

    public void Inc(ulong block)
    {
        ulong key = block / ChunkSize;
        if (!_chunks.TryGetValue(key, out var chunk))
            _chunks[key] = chunk = new byte[ChunkSize];
        int i = (int)(block % ChunkSize);
        if (chunk[i] < byte.MaxValue)
            chunk[i]++;
        else
            _large[block] = _large.GetValueOrDefault(block, byte.MaxValue) + 1;
    }

    public uint Get(ulong block)
    {
        if (!_chunks.TryGetValue(block / ChunkSize, out var chunk))
            return 0;
        byte c = chunk[(int)(block % ChunkSize)];
        return c == byte.MaxValue ? _large.GetValueOrDefault(block, byte.MaxValue) : c;
    }

    public int Fill(ulong first, Span<uint> into)
    {
        if (first % ChunkSize == 0 && into.Length <= ChunkSize && !_chunks.ContainsKey(first / ChunkSize))
        {
            into.Clear(); // the usual case for unmapped space: nothing counted in this range
            return 0;
        }
        int nonZero = 0;
        for (int i = 0; i < into.Length; i++)
        {
            into[i] = Get(first + (ulong)i);
            if (into[i] != 0)
                nonZero++;
        }
        return nonZero;
    }
}
