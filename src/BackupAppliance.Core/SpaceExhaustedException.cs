namespace BackupAppliance.Core;

/// <summary>A space map has no free block left (metadata or data device full).</summary>
public sealed class SpaceExhaustedException : Exception
{
    public SpaceExhaustedException(string spaceMap, ulong nrBlocks)
        : base($"no free blocks in the {spaceMap} space map ({nrBlocks} blocks, all in use)")
    {
        SpaceMap = spaceMap;
        NrBlocks = nrBlocks;
    }

    public string SpaceMap { get; }
    public ulong NrBlocks { get; }
}
