namespace BackupAppliance.Replication.Compression;

/// <summary>
/// zstd decompression with one reused ZSTD_DCtx (libzstd.so.1), never past a caller-given maximum:
/// a frame that declares, or turns out to have, more bytes than the destination holds is a
/// <see cref="ZstdException"/> and nothing beyond the destination is touched. Input that is not zstd
/// is a <see cref="ZstdException"/> too. Not thread-safe: one decompressor per worker.
/// </summary>
public sealed unsafe class ZstdDecompressor : IDisposable
{
    private readonly ZstdNative.DecompressionContextHandle _context;

    public ZstdDecompressor()
    {
        _context = ZstdNative.ZSTD_createDCtx();
        if (_context.IsInvalid)
            throw new OutOfMemoryException("zstd could not allocate a decompression context");
    }

    /// <summary>
    /// The decompressed size the first frame's header declares; null if the header leaves it out.
    /// Not a zstd frame is a <see cref="ZstdException"/>.
    /// </summary>
    public static long? DeclaredSize(ReadOnlySpan<byte> frame)
    {
        fixed (byte* src = frame)
        {
            ulong size = ZstdNative.ZSTD_getFrameContentSize(src, (nuint)frame.Length);
            return size switch
            {
                ZstdNative.ContentSizeError => throw new ZstdException($"not a zstd frame ({frame.Length} bytes: bad magic number or header)"),
                ZstdNative.ContentSizeUnknown => null,
                > long.MaxValue => throw new ZstdException($"zstd frame declares {size} bytes"),
                _ => (long)size,
            };
        }
    }

    /// <summary>Decompresses into <paramref name="destination"/>, whose length is the maximum; returns the bytes written.</summary>
    public int Decompress(ReadOnlySpan<byte> source, Span<byte> destination) => Decompress(source, destination, destination.Length);

    /// <summary>Decompresses at most <paramref name="maxSize"/> bytes into <paramref name="destination"/>; returns the bytes written.</summary>
    public int Decompress(ReadOnlySpan<byte> source, Span<byte> destination, int maxSize)
    {
        ObjectDisposedException.ThrowIf(_context.IsClosed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(maxSize);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxSize, destination.Length);
        if (DeclaredSize(source) is { } declared && declared > maxSize)
            throw new ZstdException($"zstd frame declares {declared} bytes, more than the maximum of {maxSize}", ZstdNative.ErrorDestinationTooSmall);
        fixed (byte* src = source)
        fixed (byte* dst = destination)
        {
            var result = ZstdNative.ZSTD_decompressDCtx(_context, dst, (nuint)maxSize, src, (nuint)source.Length);
            if (ZstdNative.ZSTD_isError(result) != 0 && ZstdNative.ZSTD_getErrorCode(result) == ZstdNative.ErrorDestinationTooSmall)
                throw new ZstdException($"zstd data expands past the maximum of {maxSize} bytes", ZstdNative.ErrorDestinationTooSmall);
            return (int)ZstdNative.Check(result, "decompression");
        }
    }

    public void Dispose() => _context.Dispose();
}
