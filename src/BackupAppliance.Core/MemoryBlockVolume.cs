namespace BackupAppliance.Core;

/// <summary>
/// An in-memory <see cref="IBlockVolume"/> with block-granular allocation: the reference
/// implementation for contract tests and for protocol tests that need no pool.
/// </summary>
public sealed class MemoryBlockVolume : IBlockVolume
{
    private readonly Dictionary<long, byte[]> _blocks = new();
    private readonly object _lock = new();

    public MemoryBlockVolume(string name, long size, int blockSize = 65536, bool readOnly = false)
    {
        if (size < 0 || blockSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(size));
        Name = name;
        Size = size;
        BlockSize = blockSize;
        IsReadOnly = readOnly;
    }

    public string Name { get; }
    public long Size { get; }
    public int BlockSize { get; }
    public bool IsReadOnly { get; }

    /// <summary>Number of allocated blocks (for tests of discard and zero detection).</summary>
    public int AllocatedBlocks { get { lock (_lock) return _blocks.Count; } }

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        CheckRange(offset, buffer.Length);
        lock (_lock)
        {
            var dst = buffer.Span;
            long pos = offset;
            while (dst.Length > 0)
            {
                long b = pos / BlockSize;
                int inBlock = (int)(pos % BlockSize);
                int n = Math.Min(dst.Length, BlockSize - inBlock);
                if (_blocks.TryGetValue(b, out var data))
                    data.AsSpan(inBlock, n).CopyTo(dst);
                else
                    dst[..n].Clear();
                dst = dst[n..];
                pos += n;
            }
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        CheckWritable();
        CheckRange(offset, data.Length);
        lock (_lock)
        {
            var src = data.Span;
            long pos = offset;
            while (src.Length > 0)
            {
                long b = pos / BlockSize;
                int inBlock = (int)(pos % BlockSize);
                int n = Math.Min(src.Length, BlockSize - inBlock);
                if (!_blocks.TryGetValue(b, out var block))
                    _blocks[b] = block = new byte[BlockSize];
                src[..n].CopyTo(block.AsSpan(inBlock));
                src = src[n..];
                pos += n;
            }
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask DiscardAsync(long offset, long length, bool fua, CancellationToken cancellationToken)
    {
        CheckWritable();
        CheckRange(offset, length);
        lock (_lock)
        {
            long first = (offset + BlockSize - 1) / BlockSize, end = (offset + length) / BlockSize;
            for (long b = first; b < end; b++)
                _blocks.Remove(b);
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua, CancellationToken cancellationToken)
    {
        CheckWritable();
        CheckRange(offset, length);
        lock (_lock)
        {
            long pos = offset, end = offset + length;
            while (pos < end)
            {
                long b = pos / BlockSize;
                int inBlock = (int)(pos % BlockSize);
                int n = (int)Math.Min(end - pos, BlockSize - inBlock);
                if (n == BlockSize && !noHole)
                    _blocks.Remove(b);
                else if (_blocks.TryGetValue(b, out var block))
                    block.AsSpan(inBlock, n).Clear();
                else if (noHole)
                    _blocks[b] = new byte[BlockSize];
                pos += n;
            }
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask<IReadOnlyList<VolumeExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken)
    {
        CheckRange(offset, length);
        var list = new List<VolumeExtent>();
        lock (_lock)
        {
            long pos = offset, end = offset + length;
            while (pos < end)
            {
                long b = pos / BlockSize;
                long blockEnd = Math.Min(end, (b + 1) * BlockSize);
                bool hole = !_blocks.ContainsKey(b);
                if (list.Count > 0 && list[^1].IsHole == hole && list[^1].Offset + list[^1].Length == pos)
                    list[^1] = list[^1] with { Length = list[^1].Length + (blockEnd - pos) };
                else
                    list.Add(new VolumeExtent(pos, blockEnd - pos, hole));
                pos = blockEnd;
            }
        }
        return ValueTask.FromResult<IReadOnlyList<VolumeExtent>>(list);
    }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Size || length > Size - offset)
            throw new VolumeException(VolumeError.InvalidArgument, $"range {offset}+{length} is outside volume {Name} ({Size} bytes)");
    }

    private void CheckWritable()
    {
        if (IsReadOnly)
            throw new VolumeException(VolumeError.ReadOnly, $"volume {Name} is read-only");
    }
}
