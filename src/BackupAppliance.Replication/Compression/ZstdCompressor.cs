using System.Buffers;

namespace BackupAppliance.Replication.Compression;

/// <summary>
/// zstd compression with one reused ZSTD_CCtx (libzstd.so.1). Each call makes one complete zstd
/// frame that records its decompressed size. Not thread-safe: one compressor per worker.
/// </summary>
public sealed unsafe class ZstdCompressor : IDisposable
{
    private readonly ZstdNative.CompressionContextHandle _context;

    /// <param name="level">zstd level, <see cref="MinLevel"/> to <see cref="MaxLevel"/>; 0 means zstd's default (3).</param>
    public ZstdCompressor(int level = 3)
    {
        if (level < MinLevel || level > MaxLevel)
            throw new ArgumentOutOfRangeException(nameof(level), level, $"zstd level must be from {MinLevel} to {MaxLevel}");
        Level = level;
        _context = ZstdNative.ZSTD_createCCtx();
        if (_context.IsInvalid)
            throw new OutOfMemoryException("zstd could not allocate a compression context");
    }

    public static int MinLevel => ZstdNative.ZSTD_minCLevel();

    public static int MaxLevel => ZstdNative.ZSTD_maxCLevel();

    /// <summary>The library's version, e.g. 10504 for 1.5.4.</summary>
    public static int LibraryVersion => (int)ZstdNative.ZSTD_versionNumber();

    public int Level { get; }

    /// <summary>The largest frame compressing <paramref name="sourceLength"/> bytes can produce (ZSTD_compressBound).</summary>
    public static int MaxCompressedLength(int sourceLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sourceLength);
        return checked((int)ZstdNative.ZSTD_compressBound((nuint)sourceLength));
    }

    /// <summary>Compresses into <paramref name="destination"/>; returns the frame's length. Too small a destination is a <see cref="ZstdException"/>.</summary>
    public int Compress(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        ObjectDisposedException.ThrowIf(_context.IsClosed, this);
        fixed (byte* src = source)
        fixed (byte* dst = destination)
        {
            var result = ZstdNative.ZSTD_compressCCtx(_context, dst, (nuint)destination.Length, src, (nuint)source.Length, Level);
            return (int)ZstdNative.Check(result, "compression");
        }
    }

    /// <summary>Compresses into <paramref name="destination"/>, asking it for room for the worst case.</summary>
    public int Compress(ReadOnlySpan<byte> source, IBufferWriter<byte> destination)
    {
        var span = destination.GetSpan(MaxCompressedLength(source.Length));
        int written = Compress(source, span);
        destination.Advance(written);
        return written;
    }

    public void Dispose() => _context.Dispose();
}
