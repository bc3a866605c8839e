namespace BackupAppliance.Thin.Kernel;

/// <summary>The mode word of a thin-pool status line (dm-thin's pool modes as userspace sees them).</summary>
public enum KernelPoolMode
{
    /// <summary><c>rw</c>: normal operation.</summary>
    ReadWrite,
    /// <summary><c>ro</c>: read-only after a metadata failure or with metadata space exhausted; messages are refused.</summary>
    ReadOnly,
    /// <summary><c>out_of_data_space</c>: writes needing new blocks queue or fail; messages still work.</summary>
    OutOfDataSpace,
}
