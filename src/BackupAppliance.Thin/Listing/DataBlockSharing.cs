namespace BackupAppliance.Thin.Listing;

/// <summary>
/// For each data block: unmapped, mapped once, or mapped more than once, counted over every mapping of
/// every listed device (thin_ls's mapping_set). Two bits per block in chunks allocated on first use,
/// since data block numbers are sparse and may be large.
/// </summary>
public sealed class DataBlockSharing
{
    private const int ChunkShift = 15; // 32768 blocks = 1024 words per chunk
    private const ulong ChunkMask = (1UL << ChunkShift) - 1;
    private readonly Dictionary<ulong, ulong[]> _chunks = new();

    public void Inc(ulong block)
    {
        ulong key = block >> ChunkShift;
        if (!_chunks.TryGetValue(key, out var chunk))
            _chunks[key] = chunk = new ulong[(1 << ChunkShift) / 32];
        ulong i = block & ChunkMask;
        ref ulong word = ref chunk[i >> 5];
        int shift = (int)(i & 31) * 2;
        ulong state = (word >> shift) & 3;
        if (state < 2)
            word += 1UL << shift;
    }

    /// <summary>True when exactly one mapping refers to the block.</summary>
    public bool IsExclusive(ulong block)
    {
        if (!_chunks.TryGetValue(block >> ChunkShift, out var chunk))
            return false;
        ulong i = block & ChunkMask;
        return ((chunk[i >> 5] >> ((int)(i & 31) * 2)) & 3) == 1;
    }
}
