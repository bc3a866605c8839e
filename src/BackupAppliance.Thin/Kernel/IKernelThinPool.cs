namespace BackupAppliance.Thin.Kernel;

/// <summary>
/// What the agent does to a kernel dm-thin pool (an LVM thin pool's <c>-tpool</c> device) through
/// target messages and the status line: the metadata snapshot that lets userspace read consistent
/// mappings while the pool runs, and thin snapshots. Implemented over dmsetup by
/// <see cref="DmsetupThinPool"/>; every failure is a <see cref="KernelPoolException"/>.
/// </summary>
public interface IKernelThinPool
{
    /// <summary>The pool's device-mapper name, e.g. <c>vg-pool-tpool</c>.</summary>
    string Name { get; }

    /// <summary><c>reserve_metadata_snap</c>: the pool commits, then keeps a copy of its mapping and details trees until released.</summary>
    Task ReserveMetadataSnapshotAsync(CancellationToken ct = default);

    /// <summary><c>release_metadata_snap</c>: frees the held copy (its blocks that the live trees no longer share).</summary>
    Task ReleaseMetadataSnapshotAsync(CancellationToken ct = default);

    /// <summary>
    /// The pool's status line, parsed. Unless the pool is suspended, the kernel commits pending
    /// metadata before reporting, so a held root just reserved is then durable in the superblock.
    /// </summary>
    Task<ThinPoolStatus> StatusAsync(CancellationToken ct = default);

    /// <summary>
    /// <c>create_snap &lt;dev&gt; &lt;origin&gt;</c>: a new thin device sharing the origin's mappings. An active
    /// origin must be suspended around this message, or writes in flight are lost to the snapshot.
    /// </summary>
    Task CreateSnapshotAsync(ulong dev, ulong origin, CancellationToken ct = default);

    /// <summary><c>delete &lt;dev&gt;</c>: removes a thin device (it must not be active).</summary>
    Task DeleteAsync(ulong dev, CancellationToken ct = default);
}
