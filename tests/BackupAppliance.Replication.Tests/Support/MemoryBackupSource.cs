using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Sending;

namespace BackupAppliance.Replication.Tests.Support;

/// <summary>An <see cref="IBackupSource"/> over a byte array (the frozen snapshot) that counts what is read.</summary>
public sealed class MemoryBackupSource(string agent, string volume, byte[] image, int blockSize, string? basePoint, string target,
    IReadOnlyList<SourceRange> ranges, BlockHashTable hashes) : IBackupSource
{
    private long _bytesRead;

    public string Agent => agent;
    public string Volume => volume;
    public long Size => image.Length;
    public int BlockSize => blockSize;
    public string? BasePoint => basePoint;
    public string Target => target;
    public IReadOnlyList<SourceRange> Ranges => ranges;
    public BlockHashTable Hashes => hashes;
    public long BytesRead => Interlocked.Read(ref _bytesRead);

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        image.AsSpan((int)offset, buffer.Length).CopyTo(buffer.Span);
        Interlocked.Add(ref _bytesRead, buffer.Length);
        return ValueTask.CompletedTask;
    }
}
