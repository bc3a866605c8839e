using BackupAppliance.Core;
using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.PersistentData;

/// <summary>
/// Block manager over a metadata file (dm-block-manager + dm-bufio): 4 KiB blocks, checksum and
/// self-location verified on every read from disk, a bounded cache with write-back of dirty blocks.
/// Eviction happens only in <see cref="Trim"/>, which owners call between operations, so a block a
/// caller holds is never recycled under it. The superblock is written only by <see cref="WriteSuperblock"/>.
/// </summary>
public sealed class BlockManager : IDisposable
{
    public const int BlockSize = BlockChecksum.BlockSize;

    private readonly SafeFileHandle _file;
    private readonly Dictionary<ulong, MetadataBlock> _cache = new();
    private readonly int _capacity;
    private const int MaxBatchRun = 64;
    // ReadBatch's working storage, kept between calls (walks call it once per internal node).
    private byte[]? _batchScratch;
    private int[] _batchOrder = [];
    private ulong[] _batchLocations = [];
    private long _clock;

    public BlockManager(string path, bool writable, int cacheBlocks = 16384)
    {
        Path = path;
        Writable = writable;
        _capacity = Math.Max(64, cacheBlocks);
        _file = File.OpenHandle(path, FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read,
            FileShare.ReadWrite, FileOptions.None);
        NrBlocks = (ulong)(DeviceLength.Of(_file, path) / BlockSize);
    }

    public string Path { get; }
    public bool Writable { get; }

    /// <summary>Whole 4 KiB blocks in the file.</summary>
    public ulong NrBlocks { get; private set; }

    public int CachedBlocks => _cache.Count;

    /// <summary>Blocks read from the file so far (cache misses and prefetches), for statistics.</summary>
    public long BlocksRead { get; private set; }

    /// <summary>Read system calls issued so far.</summary>
    public long ReadCalls { get; private set; }

    /// <summary>Reads and validates a block (cached after the first read).</summary>
    public MetadataBlock Read(ulong location, BlockKind kind)
    {
        if (_cache.TryGetValue(location, out var b))
        {
            b.LastUse = ++_clock;
            if (b.Kind != kind)
            {
                // The same bytes asked for as another kind: the kernel would run a different validator.
                if (b.Dirty)
                    throw new InvalidOperationException($"block {location} is dirty as {b.Kind}, read as {kind}");
                BlockChecksum.Validate(b.Data, location, kind);
                b.Kind = kind;
            }
            return b;
        }
        var data = new byte[BlockSize];
        ReadRaw(location, data);
        BlockChecksum.Validate(data, location, kind);
        b = new MetadataBlock(location, kind, data) { LastUse = ++_clock };
        _cache[location] = b;
        return b;
    }

    /// <summary>
    /// Reads one validated block into <paramref name="into"/> without caching it (walks that visit
    /// each node once). A cached copy wins: in a writer it may be newer than the file.
    /// </summary>
    public void ReadInto(ulong location, BlockKind kind, Span<byte> into)
    {
        if (_cache.TryGetValue(location, out var b))
        {
            if (b.Kind != kind && !b.Dirty)
                BlockChecksum.Validate(b.Data, location, kind);
            b.Data.CopyTo(into);
            return;
        }
        ReadRaw(location, into);
        BlockChecksum.Validate(into[..BlockSize], location, kind);
    }

    /// <summary>
    /// Reads validated blocks, uncached, into <paramref name="dest"/>[i] (each 4 KiB), joining
    /// neighbouring blocks into one read of up to 256 KiB: a tree walk reads an internal node's
    /// children with a handful of system calls instead of one each.
    /// </summary>
    public void ReadBatch(ReadOnlySpan<ulong> locations, BlockKind kind, byte[][] dest)
    {
        int count = locations.Length;
        if (_batchOrder.Length < count)
        {
            _batchOrder = new int[count];
            _batchLocations = new ulong[count];
        }
        var order = _batchOrder.AsSpan(0, count);
        var sorted = _batchLocations.AsSpan(0, count);
        for (int i = 0; i < count; i++)
            order[i] = i;
        locations.CopyTo(sorted);
        sorted.Sort(order);
        int k = 0;
        while (k < count)
        {
            ulong first = sorted[k];
            if (_cache.ContainsKey(first) || first >= NrBlocks)
            {
                ReadInto(first, kind, dest[order[k]]);
                k++;
                continue;
            }
            int end = k + 1;
            while (end < count && end - k < MaxBatchRun && sorted[end] == first + (ulong)(end - k)
                   && !_cache.ContainsKey(sorted[end]))
                end++;
            int n = end - k;
            if (n == 1)
            {
                ReadInto(first, kind, dest[order[k]]);
                k++;
                continue;
            }
            var scratch = _batchScratch ??= new byte[MaxBatchRun * BlockSize];
            int got = RandomAccess.Read(_file, scratch.AsSpan(0, n * BlockSize), (long)first * BlockSize);
            BlocksRead += n;
            ReadCalls++;
            if (got != n * BlockSize)
                throw new CorruptMetadataException(first, "short read");
            for (int i = 0; i < n; i++)
            {
                var block = scratch.AsSpan(i * BlockSize, BlockSize);
                BlockChecksum.Validate(block, first + (ulong)i, kind);
                block.CopyTo(dest[order[k + i]]);
            }
            k = end;
        }
    }

    /// <summary>Reads a block's bytes with no validation and no caching (checkers, superblock probes).</summary>
    public void ReadRaw(ulong location, Span<byte> into)
    {
        if (location >= NrBlocks)
            throw new CorruptMetadataException(location, $"block is beyond the end of the metadata file ({NrBlocks} blocks)");
        int n = RandomAccess.Read(_file, into[..BlockSize], (long)location * BlockSize);
        BlocksRead++;
        ReadCalls++;
        if (n != BlockSize)
            throw new CorruptMetadataException(location, "short read");
    }

    /// <summary>A zeroed block to be filled in; marked dirty (it is new in this transaction).</summary>
    public MetadataBlock Create(ulong location, BlockKind kind)
    {
        if (location >= NrBlocks)
            throw new CorruptMetadataException(location, $"allocated block is beyond the end of the metadata file ({NrBlocks} blocks)");
        if (_cache.TryGetValue(location, out var b))
        {
            Array.Clear(b.Data);
            b.Kind = kind;
        }
        else
        {
            b = new MetadataBlock(location, kind, new byte[BlockSize]);
            _cache[location] = b;
        }
        b.Dirty = true;
        b.LastUse = ++_clock;
        return b;
    }

    public void MarkDirty(MetadataBlock block)
    {
        block.Dirty = true;
    }

    /// <summary>Writes every dirty block (sealed with checksum and location), then fsyncs.</summary>
    public void FlushDirty()
    {
        var dirty = new List<MetadataBlock>();
        foreach (var b in _cache.Values)
            if (b.Dirty)
                dirty.Add(b);
        dirty.Sort((x, y) => x.Location.CompareTo(y.Location));
        foreach (var b in dirty)
            WriteBack(b);
        Sync();
    }

    /// <summary>Seals and writes block 0 (or a superblock copy), then fsyncs. The last step of a commit.</summary>
    public void WriteSuperblock(ulong location, Span<byte> data, BlockKind kind)
    {
        BlockChecksum.Seal(data, location, kind);
        RandomAccess.Write(_file, data[..BlockSize], (long)location * BlockSize);
        Sync();
        if (_cache.TryGetValue(location, out var cached))
        {
            data[..BlockSize].CopyTo(cached.Data);
            cached.Kind = kind;
            cached.Dirty = false;
        }
    }

    public void Sync() => RandomAccess.FlushToDisk(_file);

    /// <summary>
    /// Evicts least recently used blocks beyond the bound. Dirty blocks are written back first, which
    /// is only done between operations; <paramref name="cleanOnly"/> is safe in the middle of one
    /// (a caller may still hold a dirty block it is about to change; clean buffers are never reused).
    /// </summary>
    public void Trim(bool cleanOnly = false)
    {
        if (_cache.Count <= _capacity)
            return;
        var all = new MetadataBlock[_cache.Count];
        _cache.Values.CopyTo(all, 0);
        Array.Sort(all, (x, y) => x.LastUse.CompareTo(y.LastUse));
        int evict = _cache.Count - _capacity * 3 / 4;
        for (int i = 0; i < evict; i++)
        {
            var b = all[i];
            if (b.Dirty)
            {
                if (cleanOnly)
                    continue;
                WriteBack(b);
            }
            _cache.Remove(b.Location);
        }
    }

    /// <summary>Forgets every cached block (after an aborted transaction).</summary>
    public void DropCache() => _cache.Clear();

    /// <summary>Grows or shrinks the file (metadata resize); new blocks read as zeroes.</summary>
    public void SetNrBlocks(ulong nrBlocks)
    {
        RandomAccess.SetLength(_file, (long)nrBlocks * BlockSize);
        NrBlocks = nrBlocks;
    }

    private void WriteBack(MetadataBlock b)
    {
        BlockChecksum.Seal(b.Data, b.Location, b.Kind);
        RandomAccess.Write(_file, b.Data, (long)b.Location * BlockSize);
        b.Dirty = false;
    }

    public void Dispose() => _file.Dispose();
}
