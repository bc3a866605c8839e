namespace BackupAppliance.Era.Tracking;

/// <summary>How an <see cref="EraTracker"/> keeps its metadata small.</summary>
public sealed record EraTrackerOptions
{
    /// <summary>How often the background digest runs (dm-era digests in its worker).</summary>
    public TimeSpan DigestInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Archived writesets of the newest this-many eras stay undigested, so "written since" an era
    /// that recent reads only writesets (cost follows the changes); older ones are folded into the
    /// era array (cost follows the volume size, answers stay exact).
    /// </summary>
    public uint KeepUndigestedEras { get; init; } = 64;

    /// <summary>Bits digested per step (at least 64), between which writes may commit their marks.</summary>
    public int DigestBitsPerStep { get; init; } = 1 << 16;
}
