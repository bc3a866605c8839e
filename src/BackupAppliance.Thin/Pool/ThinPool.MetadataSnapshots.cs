namespace BackupAppliance.Thin.Pool;

public sealed partial class ThinPool
{
    /// <summary>
    /// reserve_metadata_snap on the open pool: commits (data first, then metadata), holds a copy of
    /// the committed trees, and returns a reader over that copy with its own file handle. The pool
    /// lock is held only for the commit and the reservation; walks through the returned snapshot take
    /// no lock, while the pool keeps writing and committing (the held blocks are shared by reference
    /// count, so the live side shadows them instead of overwriting). Dispose the snapshot to release
    /// it. Like dm-thin, a metadata snapshot protects mappings, not data: read data through it only
    /// for devices whose blocks nothing overwrites in place (a thin snapshot taken before).
    /// </summary>
    public PoolMetadataSnapshot ReserveMetadataSnapshot()
    {
        // With no write between allocating and mapping new blocks: the commit records whole writes.
        var (held, volumes) = Locked(() =>
        {
            RequireWritable();
            CommitLocked();
            ulong block = Guard(() => _md.ReserveMetadataSnapshot());
            return (block, (IReadOnlyList<VolumeEntry>)_catalogue.Volumes.ToList());
        });
        try
        {
            var reader = ThinReader.Open(Path.Combine(_dir, MetadataFile), metadataSnapshot: true, expectedSnapshotBlock: held);
            return new PoolMetadataSnapshot(this, reader, held, volumes);
        }
        catch
        {
            ReleaseMetadataSnapshot();
            throw;
        }
    }

    /// <summary>The held metadata snapshot's block, or null when none is held.</summary>
    public ulong? HeldMetadataSnapshot => Locked(() => _md.HeldRoot == 0 ? (ulong?)null : _md.HeldRoot);

    /// <summary>release_metadata_snap: drops the held copy (what only it referenced is freed) and commits.</summary>
    public void ReleaseMetadataSnapshot()
    {
        Locked(() =>
        {
            RequireWritable();
            Guard(() => _md.ReleaseMetadataSnapshot());
        });
    }
}
