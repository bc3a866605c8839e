namespace BackupAppliance.Thin.Check;

/// <summary>A bitmap of a space map: its number in the index and where it lives.</summary>
public readonly record struct BitmapLocation(ulong Index, ulong Block);

/// <summary>
/// What a space map's index and overflow tree say (dm-space-map-common): where each 2-bit bitmap
/// lives and which counts overflowed into the ref-count tree. Bitmaps the index could not name are
/// missing from <see cref="Bitmaps"/>, so their range is unknown.
/// </summary>
public sealed record SpaceMapLayout(
    string Kind,
    ulong NrBlocks,
    IReadOnlyList<BitmapLocation> Bitmaps,
    IReadOnlyDictionary<ulong, uint> Overflow,
    bool OverflowComplete)
{
    /// <summary>Bitmaps needed for <see cref="NrBlocks"/> (16320 entries each).</summary>
    public ulong NrBitmaps => NrBitmapsFor(NrBlocks);

    public static ulong NrBitmapsFor(ulong nrBlocks) =>
        nrBlocks / (ulong)PersistentData.SpaceMapBitmap.EntriesPerBlock
        + (nrBlocks % (ulong)PersistentData.SpaceMapBitmap.EntriesPerBlock == 0 ? 0UL : 1UL);
}
