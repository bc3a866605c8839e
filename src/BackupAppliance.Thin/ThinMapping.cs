namespace BackupAppliance.Thin;

/// <summary>A looked-up mapping: where the virtual block lives and whether a snapshot shares it.</summary>
public readonly record struct ThinMapping(ulong DataBlock, uint Time, bool Shared);
