namespace BackupAppliance.Replication.Wire;

/// <summary>
/// One replication message. On the wire it is the body of a frame (a MessagePack map whose first
/// entries are <c>v</c>, <c>t</c> and <c>seq</c> and whose last is <c>crc</c>; see
/// <see cref="FrameEncoder"/>). Each message knows its fields and the rules they obey;
/// <see cref="FindProblem"/> is checked both before encoding and after decoding.
/// </summary>
public abstract record ReplicationMessage
{
    public abstract MessageType Type { get; }

    /// <summary>What makes this message invalid, or null if it is valid.</summary>
    public abstract WireProblem? FindProblem();

    /// <summary>Number of map entries <see cref="WriteFields"/> writes.</summary>
    internal abstract int FieldCount { get; }

    internal abstract void WriteFields(ref MessagePackWriter writer);
}
