using BackupAppliance.Core;
using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.Nbd.Tests.Support;

/// <summary>
/// A read-only volume whose bytes lie in a file, except chosen 64 KiB blocks that read as zeroes,
/// and that lends them (<see cref="IBlockVolume.TryLendAsync"/>) one piece per 64 KiB block: file
/// pieces and zero pieces, as a thin pool does. Counts what it lent and what it copied, and can fail
/// a lend after its first piece.
/// </summary>
public sealed class FileLendingVolume : IBlockVolume, IDisposable
{
    public const int Block = 64 * 1024;

    private readonly SafeFileHandle _file;
    private readonly HashSet<long> _holes;
    private int _lends, _reads;

    public FileLendingVolume(string path, byte[] content, IEnumerable<long> holeBlocks)
    {
        File.WriteAllBytes(path, content);
        _file = File.OpenHandle(path);
        _holes = [.. holeBlocks];
        Size = content.Length;
    }

    public string Name => "lending";
    public long Size { get; }
    public int BlockSize => Block;
    public bool IsReadOnly => true;

    /// <summary>Reads served by lending, and by copying.</summary>
    public int Lends => Volatile.Read(ref _lends);
    public int Reads => Volatile.Read(ref _reads);

    /// <summary>When set, a lend throws this after handing over its first piece.</summary>
    public Exception? FailAfterFirstPiece { get; set; }

    /// <summary>The bytes the volume reads as: the file's, with the hole blocks zeroed.</summary>
    public static byte[] Expected(byte[] content, IEnumerable<long> holeBlocks)
    {
        var bytes = (byte[])content.Clone();
        foreach (long b in holeBlocks)
            Array.Clear(bytes, (int)(b * Block), Block);
        return bytes;
    }

    public ValueTask<bool> TryLendAsync(long offset, int length, IVolumeLendSink sink, CancellationToken cancellationToken)
    {
        long pos = offset;
        bool first = true;
        while (pos < offset + length)
        {
            int n = (int)Math.Min(offset + length - pos, Block - pos % Block);
            if (_holes.Contains(pos / Block))
                sink.TakeZeroes(n);
            else
                sink.TakeFile(_file, pos, n);
            if (first && FailAfterFirstPiece is { } e)
                throw e;
            first = false;
            pos += n;
        }
        Interlocked.Increment(ref _lends);
        return ValueTask.FromResult(true);
    }

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _reads);
        RandomAccess.Read(_file, buffer.Span, offset);
        for (long b = offset / Block; b * Block < offset + buffer.Length; b++)
        {
            if (!_holes.Contains(b))
                continue;
            long start = Math.Max(offset, b * Block), end = Math.Min(offset + buffer.Length, (b + 1) * Block);
            buffer.Span[(int)(start - offset)..(int)(end - offset)].Clear();
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken) => throw ReadOnly();
    public ValueTask DiscardAsync(long offset, long length, bool fua, CancellationToken cancellationToken) => throw ReadOnly();
    public ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua, CancellationToken cancellationToken) => throw ReadOnly();
    public ValueTask FlushAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask<IReadOnlyList<VolumeExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken) =>
        ValueTask.FromResult<IReadOnlyList<VolumeExtent>>([new VolumeExtent(offset, length, false)]);

    public void Dispose() => _file.Dispose();

    private VolumeException ReadOnly() => new(VolumeError.ReadOnly, $"volume {Name} is read-only");
}
