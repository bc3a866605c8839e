namespace BackupAppliance.Era;

/// <summary>How <see cref="EraMetadata.Open"/> treats the file.</summary>
public enum EraOpenMode
{
    /// <summary>Nothing is written, not even on dispose (tools).</summary>
    ReadOnly,

    /// <summary>The kernel's preresume: recover a crashed writeset, start a new era, commit.</summary>
    Activate,
}
