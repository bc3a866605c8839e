using System.Security.Cryptography;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Integrity;

/// <summary>
/// The per-block hashes a data extent carries: SHA-256 of each replication block of the extent's
/// bytes, in order; the last block may be shorter (the image's tail).
/// </summary>
public static class BlockHashes
{
    /// <summary>How many blocks (and hashes) <paramref name="length"/> bytes make.</summary>
    public static int Count(long length, int blockSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        return checked((int)((length + blockSize - 1) / blockSize));
    }

    /// <summary>Writes the hashes of <paramref name="data"/>'s blocks into <paramref name="hashes"/> (exactly <see cref="Count"/> × 32 bytes).</summary>
    public static void Compute(ReadOnlySpan<byte> data, int blockSize, Span<byte> hashes)
    {
        int count = Count(data.Length, blockSize);
        if (hashes.Length != count * WireProtocol.HashSize)
            throw new ArgumentException($"{data.Length} bytes in blocks of {blockSize} need {count * WireProtocol.HashSize} bytes of hashes, not {hashes.Length}", nameof(hashes));
        for (int i = 0; i < count; i++)
        {
            int start = i * blockSize;
            SHA256.HashData(data.Slice(start, Math.Min(blockSize, data.Length - start)), hashes.Slice(i * WireProtocol.HashSize, WireProtocol.HashSize));
        }
    }

    /// <summary>The index of the first block whose hash differs, or -1 if all match (a count mismatch is block 0).</summary>
    public static int FindMismatch(ReadOnlySpan<byte> data, int blockSize, ReadOnlySpan<byte> hashes)
    {
        int count = Count(data.Length, blockSize);
        if (hashes.Length != count * WireProtocol.HashSize)
            return 0;
        Span<byte> actual = stackalloc byte[WireProtocol.HashSize];
        for (int i = 0; i < count; i++)
        {
            int start = i * blockSize;
            SHA256.HashData(data.Slice(start, Math.Min(blockSize, data.Length - start)), actual);
            if (!actual.SequenceEqual(hashes.Slice(i * WireProtocol.HashSize, WireProtocol.HashSize)))
                return i;
        }
        return -1;
    }
}
