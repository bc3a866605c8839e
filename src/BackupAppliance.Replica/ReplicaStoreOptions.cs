namespace BackupAppliance.Replica;

/// <summary>How a <see cref="ReplicaStore"/> runs.</summary>
public sealed record ReplicaStoreOptions
{
    /// <summary>The agents and volumes this receiver keeps backups of; null keeps every one.</summary>
    public IReadOnlyList<KeptVolume>? Keep { get; init; }

    /// <summary>The clock for point ids and creation times (and the pool's commit timer).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>How often the pool commits while dirty (dm-thin's default: every second).</summary>
    public TimeSpan PoolCommitInterval { get; init; } = TimeSpan.FromSeconds(1);
}

/// <summary>An agent's volume a store keeps; a null <paramref name="Volume"/> keeps every volume of the agent.</summary>
public sealed record KeptVolume(string Agent, string? Volume = null);
