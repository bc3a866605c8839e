using BackupAppliance.Replication.Transport;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Sending;

/// <summary>
/// The agent's end of the replication protocol (PROTOCOL.md): offers a backup of one volume,
/// streams its changed ranges as data frames within the receiver's credit, resends from what the
/// receiver acknowledged after a loss or a refusal, offers again when the receiver falls silent,
/// and commits with the image digest. One call is one backup; the sender itself keeps no state
/// between calls and may run backups of different volumes at once.
/// </summary>
public sealed class BackupSender
{
    private readonly TimeProvider _time;

    public BackupSender(BackupSenderOptions? options = null, TimeProvider? time = null)
    {
        Options = (options ?? BackupSenderOptions.Default).Validate();
        _time = time ?? TimeProvider.System;
    }

    public BackupSenderOptions Options { get; }

    /// <summary>
    /// Backs up <paramref name="source"/> to whichever receiver answers on the volume's subjects,
    /// and completes its hash table (<see cref="IBackupSource.Hashes"/>, flushed before the commit).
    /// Returns once the receiver has published the point. A refusal retrying cannot fix is a
    /// <see cref="BackupRefusedException"/>; giving up after <see cref="BackupSenderOptions.MaxAttempts"/>
    /// silent offers or past the <see cref="BackupSenderOptions.Deadline"/> is a <see cref="TimeoutException"/>.
    /// </summary>
    public async Task<BackupResult> RunAsync(ITransport transport, IBackupSource source, IProgress<BackupProgress>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(source);
        var offer = OfferFor(source);
        await using var transfer = new BackupTransfer(transport, source, offer, Options, _time, progress);
        return await transfer.RunAsync(cancellationToken);
    }

    /// <summary>The offer for a source, after checking that the source keeps its own promises.</summary>
    internal static BackupOffer OfferFor(IBackupSource source)
    {
        var offer = new BackupOffer(source.Agent, source.Volume, source.BasePoint, source.Target, source.Size, source.BlockSize);
        if (offer.FindProblem() is { } problem)
            throw new ArgumentException($"backup source of {source.Agent}/{source.Volume} cannot be offered: {problem.Text}", nameof(source));
        var hashes = source.Hashes ?? throw new ArgumentException("backup source has no hash table", nameof(source));
        if (hashes.BlockSize != source.BlockSize || hashes.ImageSize != source.Size)
            throw new ArgumentException($"hash table {hashes.Path} is for {hashes.ImageSize} bytes in {hashes.BlockSize}-byte blocks, the source is {source.Size} bytes in {source.BlockSize}-byte blocks", nameof(source));
        long previousEnd = 0;
        var ranges = source.Ranges;
        for (int i = 0; i < ranges.Count; i++)
        {
            var r = ranges[i];
            string? wrong =
                r.Length <= 0 ? "is empty" :
                r.Offset < previousEnd ? $"starts before the previous range ends at {previousEnd}" :
                r.End > source.Size ? $"ends past the image size {source.Size}" :
                r.Offset % source.BlockSize != 0 ? $"does not start on a {source.BlockSize}-byte block" :
                r.End % source.BlockSize != 0 && r.End != source.Size ? $"does not end on a block or at the image size" :
                !Enum.IsDefined(r.Kind) ? $"has unknown kind {(int)r.Kind}" :
                null;
            if (wrong is not null)
                throw new ArgumentException($"range {i} ({r.Kind} at {r.Offset}, {r.Length} bytes) {wrong}", nameof(source));
            previousEnd = r.End;
        }
        return offer;
    }
}
