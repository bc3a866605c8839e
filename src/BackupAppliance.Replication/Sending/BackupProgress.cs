namespace BackupAppliance.Replication.Sending;

/// <summary>
/// A sender's progress, reported as frames go out and acknowledgements come back.
/// <see cref="BytesDone"/> counts changed bytes (data, zero and discard ranges) the receiver has made
/// durable, out of <see cref="BytesTotal"/>.
/// </summary>
public sealed record BackupProgress(long BytesDone, long BytesTotal, long BytesSent, long WireBytes, string Phase);

/// <summary>The outcome of a committed backup.</summary>
/// <param name="Point">The receiver's new point id (the base of the next backup).</param>
/// <param name="Digest">The image digest both sides agreed on.</param>
/// <param name="ChangedBytes">Bytes of the changed ranges.</param>
/// <param name="DataBytes">Bytes sent as data (before compression).</param>
/// <param name="WireBytes">Bytes of every frame published, resends included.</param>
/// <param name="Resumed">Whether the receiver resumed an earlier, interrupted attempt.</param>
public sealed record BackupResult(string Point, byte[] Digest, long ChangedBytes, long DataBytes, long WireBytes, bool Resumed, TimeSpan Elapsed);
