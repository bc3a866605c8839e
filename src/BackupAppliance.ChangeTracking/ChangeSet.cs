using BackupAppliance.Core;

namespace BackupAppliance.ChangeTracking;

/// <summary>How a change set was found.</summary>
public enum ChangeMethod
{
    /// <summary>dm-era: blocks written since an era, classified by the volume's mapping now. Needs no old snapshot.</summary>
    Era,
    /// <summary>Changes-only btree diff of the volume against an older snapshot, through a metadata snapshot.</summary>
    SnapshotDiff,
}

/// <summary>
/// The input of a backup: byte extents of a volume that changed since a base, each either data to
/// read (<see cref="VolumeExtent.IsHole"/> false) or now unmapped, reading as zeroes (true), in
/// ascending order, adjacent extents of the same kind merged. Extents are whole tracking blocks,
/// except the volume's last block, which ends at the volume's size.
/// </summary>
public sealed record ChangeSet(string Volume, ChangeMethod Method, int BlockSize, IReadOnlyList<VolumeExtent> Extents)
{
    /// <summary>The era the set counts from (by era), or the snapshot's (by snapshot diff, when it recorded one).</summary>
    public uint? SinceEra { get; init; }

    /// <summary>The snapshot the set is measured against (by snapshot diff).</summary>
    public string? SinceSnapshot { get; init; }

    public long DataBytes => Extents.Where(e => !e.IsHole).Sum(e => e.Length);
    public long UnmappedBytes => Extents.Where(e => e.IsHole).Sum(e => e.Length);

    /// <summary>The changed blocks (data or unmapped), for comparisons.</summary>
    public IEnumerable<long> Blocks(bool? unmapped = null)
    {
        foreach (var e in Extents)
        {
            if (unmapped is { } u && u != e.IsHole)
                continue;
            for (long b = e.Offset / BlockSize; b * BlockSize < e.Offset + e.Length; b++)
                yield return b;
        }
    }
}
