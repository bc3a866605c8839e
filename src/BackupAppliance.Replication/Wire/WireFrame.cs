namespace BackupAppliance.Replication.Wire;

/// <summary>A decoded frame: its envelope (version, sequence number) and its message.</summary>
/// <param name="Sequence">
/// The sender's number for the frame. Agent → receiver: 0 for an offer, 1, 2, 3… for a stream's
/// data frames, the last data frame's number + 1 for its commit. Receiver → agent: the receiver's
/// own count of replies on the stream (for logs; every reply carries absolute values).
/// </param>
public sealed record WireFrame(uint Version, ulong Sequence, ReplicationMessage Message);
