namespace BackupAppliance.Replication.Sending;

/// <summary>
/// A sender's progress, reported as frames go out and acknowledgements come back.
/// <see cref="BytesDone"/> counts changed bytes (data, zero and discard ranges) the receiver has made
/// durable, out of <see cref="BytesTotal"/>. <see cref="DataDone"/> and <see cref="DataTotal"/> count
/// only the data ranges (the bytes that are read, hashed and compressed): zero and discard ranges
/// cost next to nothing, so the data bytes are what a rate and a time left are measured on.
/// </summary>
public sealed record BackupProgress(long BytesDone, long BytesTotal, long BytesSent, long WireBytes, string Phase)
{
    /// <summary>Bytes of data ranges the receiver has made durable.</summary>
    public long DataDone { get; init; }

    /// <summary>Bytes of the change set's data ranges.</summary>
    public long DataTotal { get; init; }
}

/// <summary>The outcome of a committed backup.</summary>
/// <param name="Point">The receiver's new point id (the base of the next backup).</param>
/// <param name="Digest">The image digest both sides agreed on.</param>
/// <param name="ChangedBytes">Bytes of the changed ranges.</param>
/// <param name="DataBytes">Bytes sent as data (before compression).</param>
/// <param name="WireBytes">Bytes of every frame published, resends included.</param>
/// <param name="Resumed">Whether the receiver resumed an earlier, interrupted attempt.</param>
public sealed record BackupResult(string Point, byte[] Digest, long ChangedBytes, long DataBytes, long WireBytes, bool Resumed, TimeSpan Elapsed)
{
    /// <summary>Where <see cref="Elapsed"/> went on the agent.</summary>
    public BackupTimings Timings { get; init; } = BackupTimings.None;
}
