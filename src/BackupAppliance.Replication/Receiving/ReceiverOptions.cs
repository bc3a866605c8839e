namespace BackupAppliance.Replication.Receiving;

/// <summary>How a <see cref="BackupReceiver"/> paces streams. Immutable; <see cref="Validate"/> names the first bad option.</summary>
public sealed record ReceiverOptions
{
    /// <summary>Data frames (≤ 1 MiB each) a stream may have beyond what is durable: the memory a stream can take.</summary>
    public int CreditWindow { get; init; } = 32;

    /// <summary>Makes the staging durable (and acks) every this many data frames, and at commit.</summary>
    public int DurableEvery { get; init; } = 16;

    /// <summary>
    /// How long an unfinished stream must have been quiet before an offer of another target (or
    /// base) may replace it; until then such an offer is answered Busy.
    /// </summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Where the receiver tells what it answers to offers and commits, and every error it sends (a daemon's log); null: silent.</summary>
    public Action<string>? Log { get; init; }

    public static ReceiverOptions Default { get; } = new();

    /// <summary>Throws <see cref="ArgumentException"/> naming the option that is out of range.</summary>
    public ReceiverOptions Validate()
    {
        if (CreditWindow < 1)
            throw new ArgumentOutOfRangeException(nameof(CreditWindow), CreditWindow, $"{nameof(CreditWindow)} must be at least 1 frame");
        if (DurableEvery < 1 || DurableEvery > CreditWindow)
            throw new ArgumentOutOfRangeException(nameof(DurableEvery), DurableEvery,
                $"{nameof(DurableEvery)} must be from 1 to {nameof(CreditWindow)} ({CreditWindow}): the agent stops at the credit, so an ack must come before it");
        if (IdleTimeout < TimeSpan.Zero)
            throw new ArgumentOutOfRangeException(nameof(IdleTimeout), IdleTimeout, $"{nameof(IdleTimeout)} must not be negative");
        return this;
    }
}
