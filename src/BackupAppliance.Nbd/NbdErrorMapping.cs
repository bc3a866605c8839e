using BackupAppliance.Core;

namespace BackupAppliance.Nbd;

/// <summary>The one place storage failures become NBD error values.</summary>
internal static class NbdErrorMapping
{
    public static uint ToNbdError(VolumeError error) => error switch
    {
        VolumeError.NoSpace => NbdConstants.ENoSpc,
        VolumeError.ReadOnly => NbdConstants.EPerm,
        VolumeError.InvalidArgument => NbdConstants.EInval,
        _ => NbdConstants.EIo,
    };

    /// <summary>
    /// Error value and client-facing message for a failed volume call. Only a
    /// <see cref="VolumeException"/>'s message is shown; anything else is a bare EIO, so internal
    /// detail does not reach the client.
    /// </summary>
    public static (uint Error, string Message) FromException(Exception exception) => exception switch
    {
        VolumeException v => (ToNbdError(v.Error), v.Message),
        SpaceExhaustedException => (NbdConstants.ENoSpc, "no space left"),
        OperationCanceledException => (NbdConstants.EShutdown, "server is shutting down"),
        _ => (NbdConstants.EIo, "I/O error"),
    };

    /// <summary>Whether the failure is outside the volume contract and worth reporting to the host.</summary>
    public static bool IsUnexpected(Exception exception) =>
        exception is not (VolumeException or SpaceExhaustedException or OperationCanceledException);
}
