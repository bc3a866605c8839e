namespace BackupAppliance.Thin.Delta;

public enum DeltaKind
{
    Same,
    Different,
    LeftOnly,
    RightOnly,
}

/// <summary>A range of virtual blocks and how the two devices compare there (data begins are per side).</summary>
public readonly record struct DeltaRange(DeltaKind Kind, ulong Begin, ulong Length, ulong LeftDataBegin, ulong RightDataBegin);

/// <summary>Receives the ranges of a diff in ascending virtual-block order.</summary>
public interface IDeltaVisitor
{
    void Range(in DeltaRange range);
}
