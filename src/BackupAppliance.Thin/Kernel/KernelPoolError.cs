namespace BackupAppliance.Thin.Kernel;

/// <summary>Why an operation on a kernel (LVM) thin pool failed; callers decide on these, not on message text.</summary>
public enum KernelPoolError
{
    /// <summary>The dmsetup executable is not installed or not where it was configured.</summary>
    ToolMissing,
    /// <summary>dmsetup cannot reach the kernel's device-mapper driver (dm_mod not loaded, no /dev/mapper/control).</summary>
    DriverMissing,
    /// <summary>dmsetup was refused access to /dev/mapper/control (it needs root).</summary>
    PermissionDenied,
    /// <summary>No device-mapper device has the pool's name.</summary>
    DeviceMissing,
    /// <summary>The named device is not a thin-pool target (an LVM pool's target is its <c>-tpool</c> device).</summary>
    NotAThinPool,
    /// <summary>The pool metadata device (LVM's <c>_tmeta</c>) does not exist.</summary>
    MetadataDeviceMissing,
    /// <summary>A metadata snapshot is already held (by another reader, or left by one that died).</summary>
    SnapshotAlreadyHeld,
    /// <summary>release_metadata_snap with no metadata snapshot held.</summary>
    NoSnapshotHeld,
    /// <summary>The held root in the status differs from the superblock on the metadata device.</summary>
    HeldRootMismatch,
    /// <summary>A thin device id is not in the metadata read.</summary>
    ThinDeviceMissing,
    /// <summary>The pool is read-only (metadata out of space or failed); the kernel refuses messages.</summary>
    PoolReadOnly,
    /// <summary>The pool has failed (status <c>Fail</c>) or could not report its status (<c>Error</c>).</summary>
    PoolFailed,
    /// <summary>The status line does not have the thin-pool format.</summary>
    MalformedStatus,
    /// <summary>The metadata snapshot could not be released; it is still held.</summary>
    ReleaseFailed,
    /// <summary>dmsetup exited non-zero for another reason (its stderr is in the message), or the file is there but could not be executed.</summary>
    CommandFailed,
}
