using System.Security.Cryptography;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Integrity;

/// <summary>
/// The digest of a whole image that a commit carries: SHA-256 over the concatenated block hashes of
/// every block of the image, block 0 first (a hash list, so either side can keep per-block hashes
/// and update only the changed ones instead of re-reading the image). A block that reads as zeros
/// has the hash of that many zero bytes. Blocks are appended in order; <see cref="Finish"/> refuses
/// a digest that did not see every block.
/// </summary>
public sealed class ImageDigest : IDisposable
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private readonly long _imageSize;
    private readonly int _blockSize;
    private readonly long _blockCount;
    private byte[]? _zeroBlockHash;
    private long _next;

    public ImageDigest(long imageSize, int blockSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(imageSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        _imageSize = imageSize;
        _blockSize = blockSize;
        _blockCount = (imageSize + blockSize - 1) / blockSize;
    }

    /// <summary>Blocks appended so far: the index of the next block.</summary>
    public long NextBlock => _next;

    /// <summary>Appends the hashes of the next blocks (a multiple of 16 bytes).</summary>
    public void AppendHashes(ReadOnlySpan<byte> hashes)
    {
        if (hashes.Length % WireProtocol.BlockHashSize != 0)
            throw new ArgumentException($"block hashes are {hashes.Length} bytes, not a multiple of {WireProtocol.BlockHashSize}", nameof(hashes));
        long count = hashes.Length / WireProtocol.BlockHashSize;
        EnsureRoom(count);
        _hash.AppendData(hashes);
        _next += count;
    }

    /// <summary>Appends <paramref name="count"/> blocks that read as zeros.</summary>
    public void AppendZeroBlocks(long count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        EnsureRoom(count);
        _zeroBlockHash ??= BlockHashes.OfZeros(_blockSize);
        for (long i = 0; i < count; i++)
        {
            long index = _next + i;
            if (index == _blockCount - 1 && _imageSize % _blockSize != 0)
                _hash.AppendData(BlockHashes.OfZeros((int)(_imageSize % _blockSize)));
            else
                _hash.AppendData(_zeroBlockHash);
        }
        _next += count;
    }

    /// <summary>The 32-byte digest; every block must have been appended.</summary>
    public byte[] Finish()
    {
        if (_next != _blockCount)
            throw new InvalidOperationException($"image digest has {_next} of {_blockCount} blocks");
        return _hash.GetHashAndReset();
    }

    public void Dispose() => _hash.Dispose();

    private void EnsureRoom(long count)
    {
        if (count > _blockCount - _next)
            throw new InvalidOperationException($"image of {_blockCount} blocks has only {_blockCount - _next} left after block {_next}, not {count}");
    }
}
