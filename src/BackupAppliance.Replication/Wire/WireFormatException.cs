namespace BackupAppliance.Replication.Wire;

/// <summary>
/// A frame or MessagePack value was refused: names what was wrong (<see cref="Code"/>) and where
/// (<see cref="Offset"/>, the byte offset in the decoded buffer where the offending value starts).
/// </summary>
public sealed class WireFormatException : Exception
{
    public WireFormatException(WireErrorCode code, string what, long offset)
        : base($"{code}: {what} (at offset {offset})")
    {
        Code = code;
        Offset = offset;
        What = what;
    }

    /// <summary>The description alone, without code and offset.</summary>
    public string What { get; }

    public WireErrorCode Code { get; }

    public long Offset { get; }
}
