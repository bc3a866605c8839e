using System.Security.Cryptography;
using BackupAppliance.Core;
using BackupAppliance.Replication.Wire;
using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.Replication.Integrity;

/// <summary>
/// The hash of every block of one image (<see cref="BlockHashes"/>), kept in a file (16 bytes per
/// block, block 0 first, no header) so a backup updates only the changed blocks' hashes and still gets the digest of the
/// whole image (<see cref="ImageDigest"/>) without re-reading it. Both ends keep one: the agent for
/// its last committed base, the receiver for each volume's latest point. A block that reads as zeros has the hash
/// of that many zero bytes (the last block may be shorter than <see cref="BlockSize"/>).
/// The file is sparse: such a block's entry is stored as 16 zero bytes (no block's hash is), mostly a
/// hole, so the unmapped part of a thin volume costs its table no disk space, and copying the
/// table, hashing it for the digest and syncing it skip the holes (no page cache for them). An
/// entry holding the zero hash itself (tables written before) reads the same. A file whose length
/// does not fit the image (<see cref="Fits"/>) is no table of this format: older versions kept
/// 32-byte SHA-256 entries.
/// Not thread-safe; one writer at a time.
/// </summary>
public sealed class BlockHashTable : IDisposable
{
    private const int ChunkBlocks = 8192; // 128 KiB of hashes per I/O
    private readonly SafeFileHandle _file;
    private readonly byte[] _zeroHash;
    private readonly byte[] _lastZeroHash;

    private BlockHashTable(SafeFileHandle file, string path, long imageSize, int blockSize)
    {
        _file = file;
        Path = path;
        ImageSize = imageSize;
        BlockSize = blockSize;
        BlockCount = BlockCountOf(imageSize, blockSize);
        _zeroHash = BlockHashes.OfZeros(blockSize);
        int tail = (int)(imageSize % blockSize);
        _lastZeroHash = tail == 0 ? _zeroHash : BlockHashes.OfZeros(tail);
    }

    public string Path { get; }
    public long ImageSize { get; }
    public int BlockSize { get; }
    public long BlockCount { get; }

    /// <summary>
    /// Creates (or truncates) a table at <paramref name="path"/>: a copy of <paramref name="copyOf"/>
    /// when given (same block size; blocks beyond its image read as zeros), otherwise every block
    /// the hash of zeros (an empty image). Not durable until <see cref="Flush"/>.
    /// </summary>
    public static BlockHashTable Create(string path, long imageSize, int blockSize, BlockHashTable? copyOf = null)
    {
        Validate(imageSize, blockSize);
        if (copyOf is not null && copyOf.BlockSize != blockSize)
            throw new ArgumentException($"cannot copy a table of {copyOf.BlockSize}-byte blocks into one of {blockSize}-byte blocks", nameof(copyOf));
        var file = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.Read);
        var table = new BlockHashTable(file, path, imageSize, blockSize);
        try
        {
            RandomAccess.SetLength(file, FileLength(imageSize, blockSize)); // a new file: all holes, every block zeros
            long copied = 0;
            if (copyOf is not null)
            {
                // Whole blocks of the base keep their hashes; a base's partial last block changes
                // meaning when the image's size changes, so it and everything after start as zeros.
                long whole = copyOf.ImageSize % blockSize == 0 || copyOf.ImageSize == imageSize ? copyOf.BlockCount : copyOf.BlockCount - 1;
                copied = Math.Min(whole, table.BlockCount);
                if (copied == table.BlockCount && imageSize % blockSize != 0 && imageSize != copyOf.ImageSize)
                    copied--;
                table.CopyFrom(copyOf, copied);
            }
            return table;
        }
        catch
        {
            table.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Whether <paramref name="path"/> exists with the length a table of the image needs. False for a
    /// table of an older format (32-byte entries), which must be rebuilt, not opened.
    /// </summary>
    public static bool Fits(string path, long imageSize, int blockSize)
    {
        Validate(imageSize, blockSize);
        var file = new FileInfo(path);
        return file.Exists && file.Length == FileLength(imageSize, blockSize);
    }

    /// <summary>Blocks of an image of <paramref name="imageSize"/> bytes (the last one may be short).</summary>
    private static long BlockCountOf(long imageSize, int blockSize) => (imageSize + blockSize - 1) / blockSize;

    /// <summary>The length of a table of such an image: one entry per block.</summary>
    private static long FileLength(long imageSize, int blockSize) => BlockCountOf(imageSize, blockSize) * WireProtocol.BlockHashSize;

    /// <summary>Opens an existing table; its length must fit the image (<see cref="Fits"/>).</summary>
    public static BlockHashTable Open(string path, long imageSize, int blockSize, bool writable = false)
    {
        Validate(imageSize, blockSize);
        var file = File.OpenHandle(path, FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read, FileShare.Read);
        var table = new BlockHashTable(file, path, imageSize, blockSize);
        long expected = FileLength(imageSize, blockSize);
        long actual = RandomAccess.GetLength(file);
        if (actual != expected)
        {
            table.Dispose();
            throw new InvalidDataException($"block hash table {path} is {actual} bytes; an image of {imageSize} bytes in {blockSize}-byte blocks needs {expected}");
        }
        return table;
    }

    /// <summary>Sets the hashes of consecutive blocks from <paramref name="firstBlock"/> (16 bytes each).</summary>
    public void Set(long firstBlock, ReadOnlySpan<byte> hashes)
    {
        if (hashes.Length % WireProtocol.BlockHashSize != 0)
            throw new ArgumentException($"block hashes are {hashes.Length} bytes, not a multiple of {WireProtocol.BlockHashSize}", nameof(hashes));
        CheckRange(firstBlock, hashes.Length / WireProtocol.BlockHashSize);
        RandomAccess.Write(_file, hashes, firstBlock * WireProtocol.BlockHashSize);
    }

    /// <summary>Marks <paramref name="count"/> blocks from <paramref name="firstBlock"/> as reading zeros.</summary>
    public void SetZero(long firstBlock, long count)
    {
        CheckRange(firstBlock, count);
        if (count == 0)
            return;
        long offset = firstBlock * WireProtocol.BlockHashSize, length = count * WireProtocol.BlockHashSize;
        if (FileSync.PunchHole(_file, offset, length))
            return;
        // No holes here: zero entries written out.
        var zeros = new byte[(int)Math.Min(length, ChunkBlocks * WireProtocol.BlockHashSize)];
        for (long done = 0; done < length; done += zeros.Length)
            RandomAccess.Write(_file, zeros.AsSpan(0, (int)Math.Min(zeros.Length, length - done)), offset + done);
    }

    /// <summary>Reads the hashes of consecutive blocks from <paramref name="firstBlock"/>.</summary>
    public void Get(long firstBlock, Span<byte> hashes)
    {
        if (hashes.Length % WireProtocol.BlockHashSize != 0)
            throw new ArgumentException($"buffer of {hashes.Length} bytes is not a multiple of {WireProtocol.BlockHashSize}", nameof(hashes));
        CheckRange(firstBlock, hashes.Length / WireProtocol.BlockHashSize);
        ReadRaw(firstBlock, hashes);
        for (int i = 0; i < hashes.Length; i += WireProtocol.BlockHashSize)
        {
            var entry = hashes.Slice(i, WireProtocol.BlockHashSize);
            if (!entry.ContainsAnyExcept((byte)0))
                ZeroHashOf(firstBlock + i / WireProtocol.BlockHashSize).CopyTo(entry);
        }
    }

    /// <summary>The image digest: SHA-256 over every block's hash, block 0 first. Holes are not read.</summary>
    public byte[] ComputeDigest()
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var chunk = new byte[ChunkBlocks * WireProtocol.BlockHashSize];
        byte[]? zeroChunk = null;
        long fileEnd = FileLength(ImageSize, BlockSize);
        for (long block = 0; block < BlockCount;)
        {
            // Holes (file-system blocks are whole entries: 16 divides their size) read as zeros.
            var (dataAt, holeAt) = FileSync.NextDataRun(_file, block * WireProtocol.BlockHashSize, fileEnd);
            long dataBlock = dataAt / WireProtocol.BlockHashSize, holeBlock = (holeAt + WireProtocol.BlockHashSize - 1) / WireProtocol.BlockHashSize;
            for (int n; block < dataBlock; block += n)
            {
                n = (int)Math.Min(dataBlock - block, ChunkBlocks);
                zeroChunk ??= FillZeroHashes(new byte[chunk.Length]);
                if (block + n == BlockCount)
                {
                    // the last block's zero hash is of its own length
                    hash.AppendData(zeroChunk.AsSpan(0, (n - 1) * WireProtocol.BlockHashSize));
                    hash.AppendData(_lastZeroHash);
                }
                else
                    hash.AppendData(zeroChunk.AsSpan(0, n * WireProtocol.BlockHashSize));
            }
            for (int n; block < holeBlock; block += n)
            {
                n = (int)Math.Min(holeBlock - block, ChunkBlocks);
                var span = chunk.AsSpan(0, n * WireProtocol.BlockHashSize);
                Get(block, span);
                hash.AppendData(span);
            }
        }
        return hash.GetHashAndReset();
    }

    /// <summary>Makes every change durable (fsync).</summary>
    public void Flush() => RandomAccess.FlushToDisk(_file);

    public void Dispose() => _file.Dispose();

    /// <summary>Copies the first <paramref name="blocks"/> entries of <paramref name="source"/> as stored, skipping its holes (this new file has them already).</summary>
    private void CopyFrom(BlockHashTable source, long blocks)
    {
        var chunk = new byte[ChunkBlocks * WireProtocol.BlockHashSize];
        long end = blocks * WireProtocol.BlockHashSize;
        for (long at = 0; at < end;)
        {
            (at, long stop) = FileSync.NextDataRun(source._file, at, end);
            for (int n; at < stop; at += n)
            {
                n = (int)Math.Min(stop - at, chunk.Length);
                var span = chunk.AsSpan(0, n);
                source.ReadRaw(at / WireProtocol.BlockHashSize, span);
                if (span.ContainsAnyExcept((byte)0))
                    RandomAccess.Write(_file, span, at);
            }
        }
    }

    /// <summary>The entries as stored (zeros for a block that reads as zeros, or its zero hash).</summary>
    private void ReadRaw(long firstBlock, Span<byte> entries)
    {
        int read = RandomAccess.Read(_file, entries, firstBlock * WireProtocol.BlockHashSize);
        if (read != entries.Length)
            throw new InvalidDataException($"block hash table {Path} ended early at block {firstBlock + read / WireProtocol.BlockHashSize}");
    }

    private byte[] ZeroHashOf(long block) => block == BlockCount - 1 ? _lastZeroHash : _zeroHash;

    private byte[] FillZeroHashes(byte[] chunk)
    {
        for (int i = 0; i < chunk.Length; i += WireProtocol.BlockHashSize)
            _zeroHash.CopyTo(chunk, i);
        return chunk;
    }

    private void CheckRange(long firstBlock, long count)
    {
        if (firstBlock < 0 || count < 0 || firstBlock > BlockCount - count)
            throw new ArgumentOutOfRangeException(nameof(firstBlock), $"blocks {firstBlock}..{firstBlock + count} are outside the table's {BlockCount} blocks");
    }

    private static void Validate(long imageSize, int blockSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(imageSize);
        if (blockSize <= 0 || (blockSize & (blockSize - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(blockSize), $"block size {blockSize} is not a power of two");
    }
}
