namespace BackupAppliance.Replication.Sending;

/// <summary>
/// Where a backup's time went on the agent, for an operator asking why one was slow. The rest of
/// <see cref="BackupResult.Elapsed"/> went to offering (and retrying offers) and to going back after a resume.
/// </summary>
/// <param name="Framing">Reading, hashing and compressing the data frames (the agent's own work and its disk).</param>
/// <param name="Publishing">Handing frames to the transport (slow when NATS or the network pushes back).</param>
/// <param name="WaitingForReceiver">Out of credit with frames still to send: the receiver (or the way to it) set the pace.</param>
/// <param name="Committing">The image digest, and waiting for the receiver's commit after the last frame.</param>
public sealed record BackupTimings(TimeSpan Framing, TimeSpan Publishing, TimeSpan WaitingForReceiver, TimeSpan Committing)
{
    public static BackupTimings None { get; } = new(TimeSpan.Zero, TimeSpan.Zero, TimeSpan.Zero, TimeSpan.Zero);
}
