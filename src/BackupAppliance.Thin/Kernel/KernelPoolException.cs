namespace BackupAppliance.Thin.Kernel;

/// <summary>A kernel thin pool operation failed; <see cref="Error"/> says why, the message says what to do.</summary>
public sealed class KernelPoolException : Exception
{
    public KernelPoolException(KernelPoolError error, string message, Exception? inner = null)
        : base(message, inner) => Error = error;

    public KernelPoolError Error { get; }
}
