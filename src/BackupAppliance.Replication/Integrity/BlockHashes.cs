using System.Buffers.Binary;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Integrity;

/// <summary>
/// The per-block hashes a data extent carries: XXH3-128 of each replication block of the extent's
/// bytes, in order, each as its 16-byte canonical form (the high half first, both big-endian: what
/// <c>xxhsum -H2</c> prints); the last block may be shorter (the image's tail).
/// They guard against accidental damage and bugs between the agent's read and the receiver's write
/// (a wrong decompression, a misplaced extent), about 40 times faster than SHA-256; nothing takes a
/// matching hash as proof that it may skip bytes, which is what a deliberately made collision
/// could abuse (see PROTOCOL.md, Integrity).
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

    /// <summary>Writes the hash of one block, <paramref name="block"/>, into <paramref name="hash"/> (<see cref="WireProtocol.BlockHashSize"/> bytes).</summary>
    public static unsafe void Hash(ReadOnlySpan<byte> block, Span<byte> hash)
    {
        if (hash.Length != WireProtocol.BlockHashSize)
            throw new ArgumentException($"a block hash is {WireProtocol.BlockHashSize} bytes, not {hash.Length}", nameof(hash));
        XxHashNative.Hash128 h;
        fixed (byte* p = block)
            h = XxHashNative.XXH3_128bits(p, (nuint)block.Length);
        BinaryPrimitives.WriteUInt64BigEndian(hash, h.High64);
        BinaryPrimitives.WriteUInt64BigEndian(hash[8..], h.Low64);
    }

    /// <summary>The hash of <paramref name="length"/> zero bytes.</summary>
    public static byte[] OfZeros(int length)
    {
        var hash = new byte[WireProtocol.BlockHashSize];
        Hash(new byte[length], hash);
        return hash;
    }

    /// <summary>Writes the hashes of <paramref name="data"/>'s blocks into <paramref name="hashes"/> (exactly <see cref="Count"/> × <see cref="WireProtocol.BlockHashSize"/> bytes).</summary>
    public static void Compute(ReadOnlySpan<byte> data, int blockSize, Span<byte> hashes)
    {
        int count = Count(data.Length, blockSize);
        if (hashes.Length != count * WireProtocol.BlockHashSize)
            throw new ArgumentException($"{data.Length} bytes in blocks of {blockSize} need {count * WireProtocol.BlockHashSize} bytes of hashes, not {hashes.Length}", nameof(hashes));
        for (int i = 0; i < count; i++)
        {
            int start = i * blockSize;
            Hash(data.Slice(start, Math.Min(blockSize, data.Length - start)), hashes.Slice(i * WireProtocol.BlockHashSize, WireProtocol.BlockHashSize));
        }
    }

    /// <summary>The index of the first block whose hash differs, or -1 if all match (a count mismatch is block 0).</summary>
    public static int FindMismatch(ReadOnlySpan<byte> data, int blockSize, ReadOnlySpan<byte> hashes)
    {
        int count = Count(data.Length, blockSize);
        if (hashes.Length != count * WireProtocol.BlockHashSize)
            return 0;
        Span<byte> actual = stackalloc byte[WireProtocol.BlockHashSize];
        for (int i = 0; i < count; i++)
        {
            int start = i * blockSize;
            Hash(data.Slice(start, Math.Min(blockSize, data.Length - start)), actual);
            if (!actual.SequenceEqual(hashes.Slice(i * WireProtocol.BlockHashSize, WireProtocol.BlockHashSize)))
                return i;
        }
        return -1;
    }
}
