namespace BackupAppliance.Thin.Kernel;

/// <summary>
/// What was read through a kernel pool's metadata snapshot, with the pool status it was read under.
/// <see cref="NeedsCheck"/> set means the kernel flagged the metadata after a failed operation: the
/// read passed validation, but the pool must be checked (thin_check) before it is trusted for writes.
/// </summary>
public sealed record KernelSnapshotRead<T>(T Value, ThinPoolStatus Status, ulong HeldRoot, bool ReusedSnapshot)
{
    public bool NeedsCheck => Status.NeedsCheck;
}
