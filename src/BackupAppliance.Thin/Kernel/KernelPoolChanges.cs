using BackupAppliance.PersistentData;
using BackupAppliance.Thin.Delta;

namespace BackupAppliance.Thin.Kernel;

/// <summary>
/// Reads a running kernel thin pool's mappings the way thin_delta -m does, as one guarded sequence:
/// status (refuse a snapshot someone else holds, unless told to reuse it) → reserve_metadata_snap →
/// status again (the held root, now committed) → open the metadata device read-only, check the
/// superblock records that held root → read with <see cref="ThinReader"/> on the held root →
/// release_metadata_snap, always, also when the read fails or is cancelled. A reused snapshot is
/// never released: it belongs to whoever reserved it.
/// </summary>
public sealed class KernelPoolChanges
{
    private readonly IKernelThinPool _pool;
    private readonly string _metadataDevice;
    private readonly bool _reuseHeldSnapshot;

    /// <param name="metadataDevice">The pool's metadata device (LVM: /dev/mapper/&lt;vg&gt;-&lt;pool&gt;_tmeta), opened read-only.</param>
    /// <param name="reuseHeldSnapshot">Read through a snapshot that is already held instead of refusing; it is left held.</param>
    public KernelPoolChanges(IKernelThinPool pool, string metadataDevice, bool reuseHeldSnapshot = false)
    {
        ArgumentNullException.ThrowIfNull(pool);
        if (string.IsNullOrWhiteSpace(metadataDevice))
            throw new ArgumentException("the metadata device path is empty", nameof(metadataDevice));
        _pool = pool;
        _metadataDevice = metadataDevice;
        _reuseHeldSnapshot = reuseHeldSnapshot;
    }

    /// <summary>The changed ranges from device <paramref name="left"/> to <paramref name="right"/> (thin_delta -m without <c>same</c>).</summary>
    public Task<KernelSnapshotRead<IReadOnlyList<DeltaRange>>> ChangesAsync(ulong left, ulong right, CancellationToken ct = default) =>
        ReadAsync<IReadOnlyList<DeltaRange>>(r => DeltaCollector.Changes(r, Root(r, left), Root(r, right)), ct);

    /// <summary>Every mapping of device <paramref name="dev"/> as runs (for a full backup).</summary>
    public Task<KernelSnapshotRead<IReadOnlyList<MappingRun>>> MappingAsync(ulong dev, CancellationToken ct = default) =>
        ReadAsync<IReadOnlyList<MappingRun>>(r => MappingRuns.Of(r, Root(r, dev)), ct);

    /// <summary>Runs <paramref name="read"/> on the metadata snapshot inside the reserve/release sequence.</summary>
    public async Task<KernelSnapshotRead<T>> ReadAsync<T>(Func<ThinReader, T> read, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(read);
        var before = await _pool.StatusAsync(ct).ConfigureAwait(false);
        bool reserved = false;
        if (before.HeldRoot is { } existing)
        {
            if (!_reuseHeldSnapshot)
                throw new KernelPoolException(KernelPoolError.SnapshotAlreadyHeld,
                    $"thin pool {_pool.Name} already holds a metadata snapshot (root {existing}), reserved by another reader or left by one that died; " +
                    $"reuse it, or release it (`dmsetup message {_pool.Name} 0 release_metadata_snap`) once nobody reads it");
        }
        else
        {
            if (before.Mode == KernelPoolMode.ReadOnly)
                throw new KernelPoolException(KernelPoolError.PoolReadOnly,
                    $"thin pool {_pool.Name} is read-only{(before.NeedsCheck ? " and needs_check is set" : "")}: the kernel refuses reserve_metadata_snap; repair the pool first");
            // Not cancellable: dmsetup killed after the kernel took the message would leave a
            // snapshot held that this sequence does not know to release.
            await _pool.ReserveMetadataSnapshotAsync(CancellationToken.None).ConfigureAwait(false);
            reserved = true;
        }

        KernelSnapshotRead<T> result;
        try
        {
            var status = reserved ? await _pool.StatusAsync(ct).ConfigureAwait(false) : before;
            ulong held = status.HeldRoot ?? throw new KernelPoolException(KernelPoolError.HeldRootMismatch,
                $"reserve_metadata_snap on thin pool {_pool.Name} succeeded but its status shows no held root");
            ct.ThrowIfCancellationRequested();
            result = new KernelSnapshotRead<T>(ReadHeld(held, read), status, held, ReusedSnapshot: !reserved);
        }
        catch (Exception readError) when (reserved)
        {
            await ReleaseAsync(readError).ConfigureAwait(false);
            throw;
        }
        if (reserved)
            await ReleaseAsync(readError: null).ConfigureAwait(false);
        return result;
    }

    private T ReadHeld<T>(ulong held, Func<ThinReader, T> read)
    {
        if (!File.Exists(_metadataDevice))
            throw new KernelPoolException(KernelPoolError.MetadataDeviceMissing,
                $"metadata device {_metadataDevice} of thin pool {_pool.Name} does not exist (with LVM: /dev/mapper/<vg>-<pool>_tmeta, shown as [<pool>_tmeta] by `lvs -a`)");
        MetadataDeviceCache.Drop(_metadataDevice);
        using var blocks = new BlockManager(_metadataDevice, writable: false);
        using (var live = ThinReader.Open(blocks, ownsBlocks: false, metadataSnapshot: false, expectedSnapshotBlock: null))
        {
            ulong recorded = live.Superblock.HeldRoot;
            if (recorded != held)
                throw new KernelPoolException(KernelPoolError.HeldRootMismatch,
                    $"thin pool {_pool.Name} reports held metadata root {held}, but the superblock of {_metadataDevice} records {(recorded == 0 ? "none" : recorded)}: is it this pool's metadata device?");
        }
        using var reader = ThinReader.Open(blocks, ownsBlocks: false, metadataSnapshot: true, expectedSnapshotBlock: held);
        return read(reader);
    }

    private ulong Root(ThinReader reader, ulong dev) =>
        reader.MappingRoot(dev) ?? throw new KernelPoolException(KernelPoolError.ThinDeviceMissing,
            $"thin device {dev} is not in the metadata snapshot of thin pool {_pool.Name}");

    /// <summary>
    /// Releases the snapshot this sequence reserved. Not cancellable: a snapshot left held pins
    /// metadata blocks until someone releases it. A failing release is reported together with the
    /// read's error, if any; neither is hidden.
    /// </summary>
    private async Task ReleaseAsync(Exception? readError)
    {
        try
        {
            await _pool.ReleaseMetadataSnapshotAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception releaseError)
        {
            string before = readError is null
                ? "the read succeeded, but releasing"
                : $"reading through the metadata snapshot failed ({readError.Message}), and releasing";
            throw new KernelPoolException(KernelPoolError.ReleaseFailed,
                $"thin pool {_pool.Name}: {before} the snapshot failed ({releaseError.Message}); " +
                $"it may still be held: release it with `dmsetup message {_pool.Name} 0 release_metadata_snap`",
                readError is null ? releaseError : new AggregateException(readError, releaseError));
        }
    }
}
