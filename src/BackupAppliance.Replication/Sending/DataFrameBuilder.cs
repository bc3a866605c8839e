using System.Buffers;
using System.Collections.Concurrent;
using BackupAppliance.Replication.Compression;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Sending;

/// <summary>
/// Turns a backup source's changed ranges into data frames, in image order, from any position:
/// data ranges are read in chunks of at most <see cref="WireProtocol.MaxFrameData"/>, runs of
/// all-zero blocks become zero extents, the rest is zstd-compressed with its block hashes; zero and
/// discard ranges become extents without reading. Every block passed gets its hash in the source's
/// table. The same position always yields the same frames, so a resend is a rebuild from the
/// acknowledged position. Reads come through a <see cref="SourceReadAhead"/>, so the source reads
/// while frames are built; and while the caller encodes and sends a frame, the next one is built in
/// a second workspace (a prefetch, dropped if the caller seeks elsewhere). Memory stays at two
/// frames' pooled buffers plus the read-ahead's bounded windows.
/// </summary>
internal sealed class DataFrameBuilder : IAsyncDisposable
{
    /// <summary>Room kept in a frame for its envelope and extent headers.</summary>
    private const int FrameHeadroom = 1024;
    private const int ExtentHeaderBytes = 32;

    /// <summary>Read-ahead windows waiting: the disk stays this many frames' data ahead.</summary>
    private const int ReadAheadDepth = 4;

    /// <summary>
    /// Data runs are compressed in pieces of at most this many bytes, each its own extent, so the
    /// pieces of a chunk can be compressed and hashed on several threads at once. Not smaller: zstd
    /// picks its parameters from the input's size, and up to 256 KiB level 1 takes a set that
    /// compressed a copy of /usr/share 15% slower on the agent (full backup CPU 5.8 s against 5.3 s).
    /// </summary>
    internal const int PieceBytes = 512 * 1024;

    private readonly IBackupSource _source;
    private readonly SourceReadAhead _readAhead;
    private readonly int _level;
    private readonly ParallelOptions _parallel;
    private readonly ConcurrentBag<ZstdCompressor> _compressors = new();
    private readonly int _block;
    /// <summary>Two workspaces: the caller's last frame borrows one while the next is built in the other.</summary>
    private readonly Workspace[] _spaces;
    private int _current;
    private Prefetch? _prefetch;
    private int _range;

    public DataFrameBuilder(IBackupSource source, int compressionLevel, int compressionThreads)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(compressionThreads);
        _source = source;
        _block = source.BlockSize;
        _readAhead = new SourceReadAhead(source, WireProtocol.MaxFrameData, ReadAheadDepth);
        _level = compressionLevel;
        _parallel = new ParallelOptions { MaxDegreeOfParallelism = compressionThreads };
        _spaces = [new Workspace(_block), new Workspace(_block)];
    }

    /// <summary>The image offset the next frame starts from.</summary>
    public long Position { get; private set; }

    /// <summary>Every block below this offset has its hash in the source's table.</summary>
    public long HashedUpTo { get; private set; }

    /// <summary>Whether every range has been framed.</summary>
    public bool Done => _range >= _source.Ranges.Count;

    /// <summary>Moves to <paramref name="position"/> (an extent boundary: where a frame ended).</summary>
    public void Seek(long position)
    {
        _range = FirstEndingAfter(_source.Ranges, position);
        Position = position;
    }

    /// <summary>The index of the first range that ends after <paramref name="position"/> (the count if none).</summary>
    internal static int FirstEndingAfter(IReadOnlyList<SourceRange> ranges, long position)
    {
        int lo = 0, hi = ranges.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) / 2;
            if (ranges[mid].End <= position)
                lo = mid + 1;
            else
                hi = mid;
        }
        return lo;
    }

    /// <summary>
    /// Completes the hash table below <paramref name="end"/> without framing anything (the part a
    /// resume skips, or everything when the receiver already committed): reads data ranges and
    /// hashes them. A frame built ahead is dropped first (both read the source).
    /// </summary>
    public async ValueTask HashUpToAsync(long end, CancellationToken cancellationToken)
    {
        await DropPrefetchAsync();
        var space = _spaces[_current ^ 1];
        foreach (var r in _source.Ranges)
        {
            long start = Math.Max(r.Offset, HashedUpTo);
            long stop = Math.Min(r.End, end);
            if (start >= stop)
                continue;
            if (r.Kind != SourceRangeKind.Data)
            {
                _source.Hashes.SetZero(start / _block, BlockHashes.Count(stop - start, _block));
                continue;
            }
            for (long at = start; at < stop;)
            {
                int chunk = (int)Math.Min(stop - at, WireProtocol.MaxFrameData);
                await _readAhead.ReadAsync(at, space.Read.AsMemory(0, chunk), cancellationToken);
                var hashes = space.Hashes.AsSpan(0, BlockHashes.Count(chunk, _block) * WireProtocol.BlockHashSize);
                BlockHashes.Compute(space.Read.AsSpan(0, chunk), _block, hashes);
                _source.Hashes.Set(at / _block, hashes);
                at += chunk;
            }
        }
        HashedUpTo = Math.Max(HashedUpTo, end);
    }

    /// <summary>
    /// The next frame of stream <paramref name="stream"/>, or null when every range is framed. The
    /// frame borrows this builder's buffers: encode it before the next call. The frame after it is
    /// built meanwhile, on the thread pool.
    /// </summary>
    public async ValueTask<DataFrame?> NextAsync(ulong stream, CancellationToken cancellationToken)
    {
        int next = _current ^ 1;
        Built? built = null;
        if (_prefetch is { } ahead)
        {
            _prefetch = null;
            if (ahead.Start == Position)
                built = await ahead.Task; // its failure is this call's
            else
                await DropAsync(ahead);
        }
        if (built is null)
        {
            if (Position > HashedUpTo)
                await HashUpToAsync(Position, cancellationToken);
            built = await BuildAsync(_spaces[next], Position, _range, cancellationToken);
        }
        var b = built.Value;
        _current = next;
        Position = b.End;
        _range = b.Range;
        HashedUpTo = Math.Max(HashedUpTo, Position);
        if (b.Extents is null)
        {
            if (!Done)
                throw new InvalidOperationException($"no extent at {Position} fits an empty data frame");
            return null;
        }
        if (!Done)
        {
            var space = _spaces[_current ^ 1];
            long start = Position;
            int range = _range;
            _prefetch = new Prefetch(start, Task.Run(() => BuildAsync(space, start, range, cancellationToken).AsTask(), cancellationToken));
        }
        return new DataFrame(stream, b.Extents);
    }

    public async ValueTask DisposeAsync()
    {
        await DropPrefetchAsync();
        await _readAhead.DisposeAsync();
        while (_compressors.TryTake(out var z))
            z.Dispose();
        foreach (var space in _spaces)
            space.Dispose();
    }

    private async ValueTask DropPrefetchAsync()
    {
        if (_prefetch is { } ahead)
        {
            _prefetch = null;
            await DropAsync(ahead);
        }
    }

    /// <summary>Waits for a frame built ahead that will not be sent; how it ended does not matter (a rebuild meets the same).</summary>
    private static async ValueTask DropAsync(Prefetch ahead) =>
        await ((Task)ahead.Task).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);

    /// <summary>
    /// Builds the frame that starts at <paramref name="position"/> (in range <paramref name="range"/>)
    /// in <paramref name="space"/>. Changes nothing of the builder's but the source's hash table
    /// (which a rebuild fills with the same values), so it may run ahead of the caller.
    /// </summary>
    private async ValueTask<Built> BuildAsync(Workspace space, long position, int range, CancellationToken cancellationToken)
    {
        space.Extents.Clear();
        space.Position = position;
        space.Range = range;
        var packing = new Packing();
        var ranges = _source.Ranges;
        while (space.Range < ranges.Count && space.Extents.Count < WireProtocol.MaxExtentsPerFrame)
        {
            var r = ranges[space.Range];
            long start = Math.Max(r.Offset, space.Position);
            if (start >= r.End)
            {
                space.Range++;
                continue;
            }
            if (r.Kind != SourceRangeKind.Data)
            {
                AddZero(space, start, r.End - start, r.Kind == SourceRangeKind.Discard);
                Advance(space, r.End);
                continue;
            }
            int room = (WireProtocol.MaxFrameData - packing.Data) / _block * _block;
            if (room == 0)
                break;
            int chunk = (int)Math.Min(r.End - start, room);
            await _readAhead.ReadAsync(start, space.Read.AsMemory(0, chunk), cancellationToken);
            int used = PackChunk(space, start, chunk, ref packing);
            Advance(space, start + used);
            if (used < chunk)
                break; // the frame is full (extents or bytes); the rest of the chunk goes in the next
        }
        return new Built(space.Extents.Count == 0 ? null : space.Extents, space.Position, space.Range);
    }

    private void Advance(Workspace space, long position)
    {
        space.Position = position;
        if (space.Range < _source.Ranges.Count && position >= _source.Ranges[space.Range].End)
            space.Range++;
    }

    /// <summary>
    /// Splits a chunk read at <paramref name="offset"/> into zero runs and data pieces, compresses
    /// and hashes the pieces that may fit (on up to the configured threads), then adds extents in
    /// image order while the frame has room; returns the bytes consumed. The split depends only on
    /// the bytes, so the same position always yields the same frame.
    /// </summary>
    private int PackChunk(Workspace space, long offset, int length, ref Packing packing)
    {
        SplitRuns(space, length, WireProtocol.MaxExtentsPerFrame - space.Extents.Count);
        PreparePieces(space, packing);
        int consumed = 0;
        foreach (var run in space.Runs)
        {
            if (space.Extents.Count >= WireProtocol.MaxExtentsPerFrame)
                break;
            if (run.Zero)
                AddZero(space, offset + run.At, run.Length, discard: false);
            else if (run.PackedAt < 0 || !TryAddData(space, offset + run.At, run, ref packing))
                break;
            consumed = run.At + run.Length;
        }
        return consumed;
    }

    /// <summary>The chunk's runs, in order: all-zero runs, and data runs cut into pieces; at most <paramref name="limit"/> of them (each becomes at most one extent).</summary>
    private void SplitRuns(Workspace space, int length, int limit)
    {
        var runs = space.Runs;
        runs.Clear();
        int piece = Math.Max(_block, PieceBytes / _block * _block);
        for (int i = 0; i < length && runs.Count < limit;)
        {
            bool zero = IsZeroBlock(space, i, length);
            int j = i + Math.Min(_block, length - i);
            while (j < length && (zero || j - i < piece) && IsZeroBlock(space, j, length) == zero)
                j += Math.Min(_block, length - j);
            runs.Add(new Run(i, j - i, zero));
            i = j;
        }
    }

    /// <summary>
    /// Compresses and hashes every data piece, each into its own region of the frame's buffers
    /// (a region as large as the piece could compress to), the pieces on several threads. A piece
    /// whose region does not fit is left unprepared (<see cref="Run.PackedAt"/> -1): the frame ends before it.
    /// </summary>
    private void PreparePieces(Workspace space, Packing packing)
    {
        var runs = space.Runs;
        int region = packing.Region, hashes = packing.Hashes, prepared = 0;
        for (int r = 0; r < runs.Count; r++)
        {
            var run = runs[r];
            if (run.Zero)
                continue;
            int bound = ZstdCompressor.MaxCompressedLength(run.Length);
            int hashBytes = BlockHashes.Count(run.Length, _block) * WireProtocol.BlockHashSize;
            if (space.Packed.Length - region < bound || space.Hashes.Length - hashes < hashBytes)
                break;
            runs[r] = run with { PackedAt = region, PackedBound = bound, HashesAt = hashes, HashBytes = hashBytes };
            region += bound;
            hashes += hashBytes;
            prepared++;
        }
        if (prepared <= 1 || _parallel.MaxDegreeOfParallelism == 1)
        {
            var z = RentCompressor();
            for (int r = 0; r < runs.Count; r++)
                Prepare(space, r, z);
            _compressors.Add(z);
            return;
        }
        Parallel.For(0, runs.Count, _parallel, RentCompressor, (r, _, z) => { Prepare(space, r, z); return z; }, _compressors.Add);
    }

    private void Prepare(Workspace space, int r, ZstdCompressor z)
    {
        var run = space.Runs[r];
        if (run.Zero || run.PackedAt < 0)
            return;
        var data = space.Read.AsSpan(run.At, run.Length);
        int packed = z.Compress(data, space.Packed.AsSpan(run.PackedAt, run.PackedBound));
        BlockHashes.Compute(data, _block, space.Hashes.AsSpan(run.HashesAt, run.HashBytes));
        space.Runs[r] = run with { PackedLength = packed };
    }

    private ZstdCompressor RentCompressor() => _compressors.TryTake(out var z) ? z : new ZstdCompressor(_level);

    private bool IsZeroBlock(Workspace space, int at, int length) =>
        !space.Read.AsSpan(at, Math.Min(_block, length - at)).ContainsAnyExcept((byte)0);

    private bool TryAddData(Workspace space, long offset, Run run, ref Packing packing)
    {
        var extents = space.Extents;
        long frameBytes = packing.Packed + run.PackedLength + packing.Hashes + run.HashBytes + (extents.Count + 1L) * ExtentHeaderBytes;
        if (frameBytes > WireProtocol.MaxFrameBytes - FrameHeadroom)
            return false;
        var hashes = space.Hashes.AsMemory(run.HashesAt, run.HashBytes);
        _source.Hashes.Set(offset / _block, hashes.Span);
        extents.Add(WireExtent.Data(offset, run.Length, space.Packed.AsMemory(run.PackedAt, run.PackedLength), hashes));
        packing = new Packing(packing.Data + run.Length, run.PackedAt + run.PackedBound,
            packing.Packed + run.PackedLength, run.HashesAt + run.HashBytes);
        return true;
    }

    private void AddZero(Workspace space, long offset, long length, bool discard)
    {
        _source.Hashes.SetZero(offset / _block, BlockHashes.Count(length, _block));
        var extents = space.Extents;
        var kind = discard ? ExtentKind.Discard : ExtentKind.Zero;
        if (extents.Count > 0 && extents[^1].Kind == kind && extents[^1].End == offset)
        {
            var last = extents[^1];
            extents[^1] = last with { Length = last.Length + length };
            return;
        }
        extents.Add(discard ? WireExtent.Discard(offset, length) : WireExtent.Zero(offset, length));
    }

    /// <summary>
    /// Where one frame is built: the source's bytes, the compressed pieces, the block hashes, the
    /// runs and extents, and the build's cursor (image offset and range index). Pooled buffers.
    /// </summary>
    private sealed class Workspace : IDisposable
    {
        public Workspace(int blockSize)
        {
            Read = ArrayPool<byte>.Shared.Rent(WireProtocol.MaxFrameData);
            Packed = ArrayPool<byte>.Shared.Rent(ZstdCompressor.MaxCompressedLength(WireProtocol.MaxFrameData)
                                                 + WireProtocol.MaxExtentsPerFrame * ZstdCompressor.MaxCompressedLength(0));
            Hashes = ArrayPool<byte>.Shared.Rent((WireProtocol.MaxFrameData / blockSize + 1) * WireProtocol.BlockHashSize);
        }

        public byte[] Read { get; }
        public byte[] Packed { get; }
        public byte[] Hashes { get; }
        public List<Run> Runs { get; } = new();
        public List<WireExtent> Extents { get; } = new(WireProtocol.MaxExtentsPerFrame);
        public long Position { get; set; }
        public int Range { get; set; }

        public void Dispose()
        {
            ArrayPool<byte>.Shared.Return(Read);
            ArrayPool<byte>.Shared.Return(Packed);
            ArrayPool<byte>.Shared.Return(Hashes);
        }
    }

    /// <summary>A built frame's extents (null: none) and where the next frame starts.</summary>
    private readonly record struct Built(List<WireExtent>? Extents, long End, int Range);

    /// <summary>The frame being built ahead, from image offset <see cref="Start"/>.</summary>
    private sealed record Prefetch(long Start, Task<Built> Task);

    /// <summary>
    /// How much of a frame is used: data bytes before compression, bytes of the packed buffer's
    /// regions taken, packed payload bytes (what goes on the wire), hash bytes.
    /// </summary>
    private readonly record struct Packing(int Data, int Region, int Packed, int Hashes);

    /// <summary>
    /// A run of a chunk from byte <see cref="At"/>: all zeros, or data given the region at
    /// <see cref="PackedAt"/> (-1: none, not prepared) of <see cref="PackedBound"/> bytes, which it
    /// fills with <see cref="PackedLength"/>, and its hashes at <see cref="HashesAt"/>.
    /// </summary>
    private readonly record struct Run(int At, int Length, bool Zero, int PackedAt = -1, int PackedBound = 0, int PackedLength = 0, int HashesAt = 0, int HashBytes = 0);
}
