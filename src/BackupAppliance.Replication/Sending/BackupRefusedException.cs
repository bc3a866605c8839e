using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Sending;

/// <summary>
/// The receiver refused the backup for a reason retrying cannot fix (an unknown volume, a base it
/// does not hold, an unsupported version, no space, a digest that differs…): <see cref="Code"/>
/// and the receiver's own text.
/// </summary>
public sealed class BackupRefusedException : Exception
{
    public BackupRefusedException(WireErrorCode code, string receiverMessage, string agent, string volume)
        : base($"the receiver refused the backup of {agent}/{volume}: {code}: {receiverMessage}")
    {
        Code = code;
        ReceiverMessage = receiverMessage;
    }

    public WireErrorCode Code { get; }

    /// <summary>What the receiver said was wrong.</summary>
    public string ReceiverMessage { get; }
}
