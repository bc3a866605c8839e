using System.Buffers;
using BackupAppliance.Core;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Wire;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Replica;

/// <summary>
/// Builds a point's block hash table from the point's own bytes, for a base point that has none (the
/// store keeps the table of each volume's latest point only; an older point becomes a base again
/// only after the points above it were deleted). Unmapped ranges and all-zero blocks are left as the
/// table's zero entries (holes); the rest is read and hashed. Written to <c>&lt;path&gt;.tmp</c>,
/// fsynced, then renamed, so a half table never has the final name.
/// </summary>
internal static class PointTableBuilder
{
    private const int Chunk = 1 << 20;

    public static async ValueTask BuildAsync(IBlockVolume source, string path, int blockSize, CancellationToken cancellationToken)
    {
        int chunk = Math.Max(blockSize, Chunk / blockSize * blockSize);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(chunk);
        byte[] hashes = ArrayPool<byte>.Shared.Rent(chunk / blockSize * WireProtocol.BlockHashSize);
        try
        {
            await AtomicFile.WriteAsync(path, ".tmp", overwrite: true, async partial =>
            {
                using var table = BlockHashTable.Create(partial, source.Size, blockSize);
                var extents = await source.GetAllocationAsync(0, source.Size, cancellationToken).ConfigureAwait(false);
                int e = 0;
                for (long pos = 0; pos < source.Size; pos += chunk)
                {
                    int n = (int)Math.Min(chunk, source.Size - pos);
                    while (e < extents.Count && extents[e].Offset + extents[e].Length <= pos)
                        e++;
                    if (OnlyHoles(extents, e, pos, pos + n))
                        continue;
                    await source.ReadAsync(pos, buffer.AsMemory(0, n), cancellationToken).ConfigureAwait(false);
                    var entries = hashes.AsSpan(0, BlockHashes.Count(n, blockSize) * WireProtocol.BlockHashSize);
                    for (int at = 0, i = 0; at < n; at += blockSize, i += WireProtocol.BlockHashSize)
                    {
                        var block = buffer.AsSpan(at, Math.Min(blockSize, n - at));
                        var entry = entries.Slice(i, WireProtocol.BlockHashSize);
                        if (block.ContainsAnyExcept((byte)0))
                            BlockHashes.Hash(block, entry);
                        else
                            entry.Clear(); // a zero entry is the table's "reads as zeros"
                    }
                    table.Set(pos / blockSize, entries);
                }
                table.Flush();
            }).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            ArrayPool<byte>.Shared.Return(hashes);
        }
    }

    /// <summary>Whether holes among the extents from <paramref name="first"/> on cover [<paramref name="start"/>, <paramref name="end"/>) without a gap.</summary>
    private static bool OnlyHoles(IReadOnlyList<VolumeExtent> extents, int first, long start, long end)
    {
        long covered = start;
        for (int i = first; i < extents.Count && covered < end; i++)
        {
            if (extents[i].Offset > covered || !extents[i].IsHole)
                return false;
            covered = Math.Max(covered, extents[i].Offset + extents[i].Length);
        }
        return covered >= end;
    }
}
