using System.Runtime.InteropServices;

namespace BackupAppliance.Replication.Compression;

/// <summary>
/// The few entry points of the system's libzstd (Debian's libzstd1) we use. The versioned name is
/// bound on purpose: the unversioned libzstd.so exists only where the -dev package is installed.
/// </summary>
internal static unsafe partial class ZstdNative
{
    private const string Library = "libzstd.so.1";

    /// <summary>ZSTD_CONTENTSIZE_UNKNOWN: the frame header does not say its decompressed size.</summary>
    public const ulong ContentSizeUnknown = ulong.MaxValue;

    /// <summary>ZSTD_CONTENTSIZE_ERROR: not a valid zstd frame header.</summary>
    public const ulong ContentSizeError = ulong.MaxValue - 1;

    /// <summary>ZSTD_error_dstSize_tooSmall (a stable value of zstd_errors.h).</summary>
    public const int ErrorDestinationTooSmall = 70;

    [LibraryImport(Library)]
    public static partial CompressionContextHandle ZSTD_createCCtx();

    [LibraryImport(Library)]
    public static partial nuint ZSTD_freeCCtx(nint cctx);

    [LibraryImport(Library)]
    public static partial DecompressionContextHandle ZSTD_createDCtx();

    [LibraryImport(Library)]
    public static partial nuint ZSTD_freeDCtx(nint dctx);

    [LibraryImport(Library)]
    public static partial nuint ZSTD_compressCCtx(CompressionContextHandle cctx, byte* dst, nuint dstCapacity, byte* src, nuint srcSize, int compressionLevel);

    [LibraryImport(Library)]
    public static partial nuint ZSTD_decompressDCtx(DecompressionContextHandle dctx, byte* dst, nuint dstCapacity, byte* src, nuint srcSize);

    [LibraryImport(Library)]
    public static partial nuint ZSTD_compressBound(nuint srcSize);

    [LibraryImport(Library)]
    public static partial ulong ZSTD_getFrameContentSize(byte* src, nuint srcSize);

    [LibraryImport(Library)]
    public static partial uint ZSTD_isError(nuint code);

    [LibraryImport(Library)]
    public static partial int ZSTD_getErrorCode(nuint code);

    [LibraryImport(Library)]
    public static partial nint ZSTD_getErrorName(nuint code);

    [LibraryImport(Library)]
    public static partial int ZSTD_minCLevel();

    [LibraryImport(Library)]
    public static partial int ZSTD_maxCLevel();

    [LibraryImport(Library)]
    public static partial uint ZSTD_versionNumber();

    /// <summary>Throws <see cref="ZstdException"/> if <paramref name="result"/> is a zstd error code.</summary>
    public static nuint Check(nuint result, string operation)
    {
        if (ZSTD_isError(result) == 0)
            return result;
        string name = Marshal.PtrToStringUTF8(ZSTD_getErrorName(result)) ?? "unknown error";
        throw new ZstdException($"zstd {operation} failed: {name}", ZSTD_getErrorCode(result));
    }

    /// <summary>A zstd context pointer; null is invalid.</summary>
    public abstract class ContextHandle() : SafeHandle(0, ownsHandle: true)
    {
        public override bool IsInvalid => handle == 0;
    }

    /// <summary>A ZSTD_CCtx, freed when released.</summary>
    public sealed class CompressionContextHandle : ContextHandle
    {
        protected override bool ReleaseHandle() => ZSTD_freeCCtx(handle) == 0;
    }

    /// <summary>A ZSTD_DCtx, freed when released.</summary>
    public sealed class DecompressionContextHandle : ContextHandle
    {
        protected override bool ReleaseHandle() => ZSTD_freeDCtx(handle) == 0;
    }
}
