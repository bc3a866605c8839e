using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Receiving;

/// <summary>A valid frame the receiver will not act on: answered with an error reply of <see cref="Code"/>, nothing changed.</summary>
internal sealed class FrameRefusal(WireErrorCode code, string message) : Exception(message)
{
    public WireErrorCode Code { get; } = code;
}
