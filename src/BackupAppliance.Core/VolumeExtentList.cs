namespace BackupAppliance.Core;

/// <summary>Builds an ascending list of extents, merging a new one into the last when they touch and are of the same kind.</summary>
public sealed class VolumeExtentList
{
    public List<VolumeExtent> Items { get; } = new();

    public void Add(long offset, long length, bool hole)
    {
        if (length <= 0)
            return;
        if (Items.Count > 0 && Items[^1].IsHole == hole && Items[^1].Offset + Items[^1].Length == offset)
            Items[^1] = Items[^1] with { Length = Items[^1].Length + length };
        else
            Items.Add(new VolumeExtent(offset, length, hole));
    }
}
