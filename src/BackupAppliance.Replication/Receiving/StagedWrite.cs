namespace BackupAppliance.Replication.Receiving;

/// <summary>
/// One extent of a gathered <see cref="IStagedPoint.WriteAsync(IReadOnlyList{StagedWrite}, ReadOnlyMemory{byte}, CancellationToken)"/>:
/// where its verified bytes go and their block hashes (32 bytes per block, in order). Its bytes
/// follow the previous extent's in the write's data.
/// </summary>
public readonly record struct StagedWrite(long Offset, int Length, ReadOnlyMemory<byte> BlockHashes);
