namespace BackupAppliance.Replication.Compression;

/// <summary>zstd refused an input or an output was too small; the message names zstd's reason.</summary>
public sealed class ZstdException : Exception
{
    public ZstdException(string message, int zstdErrorCode = 0)
        : base(message) => ZstdErrorCode = zstdErrorCode;

    /// <summary>zstd's ZSTD_ErrorCode (zstd_errors.h), 0 when the check was ours.</summary>
    public int ZstdErrorCode { get; }
}
