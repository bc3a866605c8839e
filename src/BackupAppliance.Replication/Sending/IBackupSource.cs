using BackupAppliance.Core;
using BackupAppliance.Replication.Integrity;

namespace BackupAppliance.Replication.Sending;

/// <summary>
/// What one backup sends, prepared by the agent: a frozen image (the agent's snapshot), the ranges
/// that changed since the base, and the target's block hash table, which starts as a copy of the
/// base's and which the sender completes for the ranges it sends.
/// </summary>
public interface IBackupSource
{
    string Agent { get; }
    string Volume { get; }
    /// <summary>Image size in bytes.</summary>
    long Size { get; }
    /// <summary>Replication block size: a power of two from 4 KiB to 512 KiB.</summary>
    int BlockSize { get; }
    /// <summary>The receiver's point this is an increment of; null for a full backup.</summary>
    string? BasePoint { get; }
    /// <summary>The agent's snapshot id (the same one after an agent restart, so the receiver resumes).</summary>
    string Target { get; }

    /// <summary>Changed ranges: ascending, not overlapping, block-aligned (the last may end at <see cref="Size"/>).</summary>
    IReadOnlyList<SourceRange> Ranges { get; }

    /// <summary>The target's block hash table (<see cref="BlockHashTable.BlockSize"/> = <see cref="BlockSize"/>).</summary>
    BlockHashTable Hashes { get; }

    /// <summary>Reads the frozen image.</summary>
    ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>
    /// Reads several ranges of the frozen image into <paramref name="buffer"/>, one after the other:
    /// a source may serve ranges that lie side by side on its disk with one read.
    /// </summary>
    async ValueTask ReadAsync(IReadOnlyList<VolumeRange> ranges, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int at = 0;
        foreach (var r in ranges)
        {
            await ReadAsync(r.Offset, buffer.Slice(at, r.Length), cancellationToken).ConfigureAwait(false);
            at += r.Length;
        }
    }
}

/// <summary>How a changed range is sent.</summary>
public enum SourceRangeKind
{
    /// <summary>Mapped: read it; blocks found all zeros are sent as zero extents.</summary>
    Data,
    /// <summary>Known to read as zeros without reading (written zeros, no-hole).</summary>
    Zero,
    /// <summary>Unmapped in the target: sent as a discard, so the replica stays thin.</summary>
    Discard,
}

public readonly record struct SourceRange(long Offset, long Length, SourceRangeKind Kind)
{
    public long End => Offset + Length;
}
