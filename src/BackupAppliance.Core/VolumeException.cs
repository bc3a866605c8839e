namespace BackupAppliance.Core;

/// <summary>Why a volume operation failed, in terms a block-device client understands.</summary>
public enum VolumeError
{
    /// <summary>The pool's data space is exhausted (ENOSPC).</summary>
    NoSpace,
    /// <summary>The volume or pool is read-only (EPERM).</summary>
    ReadOnly,
    /// <summary>Bad offset or length (EINVAL).</summary>
    InvalidArgument,
    /// <summary>The metadata or data device failed (EIO).</summary>
    IoError,
}

public sealed class VolumeException : Exception
{
    public VolumeException(VolumeError error, string message, Exception? inner = null)
        : base(message, inner) => Error = error;

    public VolumeError Error { get; }
}
