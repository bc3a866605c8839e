namespace BackupAppliance.Replication.Receiving;

/// <summary>What an accepted offer asks the store to stage.</summary>
/// <param name="BasePoint">The point to build on (a thin snapshot of it); null for a full backup.</param>
/// <param name="Target">The agent's snapshot id (recorded on the point).</param>
/// <param name="Size">Image size in bytes.</param>
/// <param name="BlockSize">Replication block size (the offer's <c>block</c>): the hash table's granularity.</param>
public sealed record StagingRequest(string Agent, string Volume, ulong Stream, string? BasePoint, string Target, long Size, int BlockSize);

/// <summary>A staging's durable progress: data frames up to <see cref="DurableSequence"/> are applied and the image is complete below <see cref="DurablePosition"/>.</summary>
public sealed record StagingState(StagingRequest Request, ulong DurableSequence, long DurablePosition, long ChangedBytes);
