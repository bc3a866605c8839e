using BackupAppliance.Replication.Compression;

namespace BackupAppliance.Replication.Sending;

/// <summary>How a <see cref="BackupSender"/> sends. Immutable; <see cref="Validate"/> names the first bad option.</summary>
public sealed record BackupSenderOptions
{
    /// <summary>zstd level of data payloads (1 is faster, 19 smaller).</summary>
    public int CompressionLevel { get; init; } = 3;

    /// <summary>
    /// Threads compressing and hashing a frame's data at once (pieces of 512 KiB, so a 1 MiB chunk
    /// keeps two busy, more only where zero blocks split its data): the sender's limit on a host with
    /// cores to spare. Default: the processor count, at most 4.
    /// </summary>
    public int CompressionThreads { get; init; } = Math.Min(4, Environment.ProcessorCount);

    /// <summary>How long to wait for the answer to an offer before offering again.</summary>
    public TimeSpan OfferTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long a stream may wait for an ack, a credit or a commit_ack before the sender offers
    /// again (lost messages, a disconnect, a receiver or server restart all look like this).
    /// </summary>
    public TimeSpan AckTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How long to wait before offering again when the receiver answers Busy or Internal.</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Offers in a row without progress (nothing new made durable) before giving up.</summary>
    public int MaxAttempts { get; init; } = 10;

    /// <summary>Gives up once a backup has taken this long in all; null: no deadline.</summary>
    public TimeSpan? Deadline { get; init; }

    public const int MaxCompressionThreads = 64;

    public static BackupSenderOptions Default { get; } = new();

    /// <summary>Throws <see cref="ArgumentException"/> naming the option that is out of range.</summary>
    public BackupSenderOptions Validate()
    {
        if (CompressionLevel < ZstdCompressor.MinLevel || CompressionLevel > ZstdCompressor.MaxLevel)
            throw new ArgumentOutOfRangeException(nameof(CompressionLevel), CompressionLevel, $"{nameof(CompressionLevel)} must be from {ZstdCompressor.MinLevel} to {ZstdCompressor.MaxLevel}");
        if (CompressionThreads < 1 || CompressionThreads > MaxCompressionThreads)
            throw new ArgumentOutOfRangeException(nameof(CompressionThreads), CompressionThreads, $"{nameof(CompressionThreads)} must be from 1 to {MaxCompressionThreads}");
        Positive(OfferTimeout, nameof(OfferTimeout));
        Positive(AckTimeout, nameof(AckTimeout));
        if (RetryDelay < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(RetryDelay), RetryDelay, $"{nameof(RetryDelay)} must not be negative");
        if (MaxAttempts < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxAttempts), MaxAttempts, $"{nameof(MaxAttempts)} must be at least 1");
        if (Deadline is { } d)
            Positive(d, nameof(Deadline));
        return this;
    }

    private static void Positive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero || value.TotalMilliseconds > int.MaxValue)
            throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive and at most {int.MaxValue} ms");
    }
}
