using System.Buffers.Binary;
using BackupAppliance.Core;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Era;

/// <summary>
/// dm-era metadata (dm-era-target.c) in the kernel's on-disk format: per-block "last written in era N"
/// as a current writeset (a bitset of the blocks written this era), archived writesets in a btree
/// keyed by era, and an era array into which archived writesets are digested oldest first.
/// Not thread-safe except <see cref="IsMarked"/> and <see cref="AreAllMarked"/>, which read an
/// in-core copy of the committed current writeset: a bit shows there only after the commit that
/// persisted it (the 2021 "update the in-core bitset after committing the metadata" fix).
/// </summary>
public sealed class EraMetadata : IDisposable
{
    /// <summary>nr_blocks is a u32 on disk and the kernel keeps it below 2^31.</summary>
    public const uint MaxNrBlocks = int.MaxValue;

    private static readonly int WordsPerBitsetBlock = EraLayout.WordsPerBitsetBlock;
    private static readonly int ErasPerArrayBlock = EraLayout.ErasPerArrayBlock;

    private readonly BlockManager _bm;
    private readonly TransactionManager _tm;
    private readonly EraOpenMode _mode;
    private MetadataSpaceMap _msm = null!;
    private Bitset _bitset = null!;
    private ArrayTree _eraArray = null!;
    private BTree _writesets = null!;
    private EraSuperblock _sb = null!;

    // The committed current writeset, read by any thread; replaced (not cleared) when an era starts.
    private ulong[] _inCore = [];
    // The on-disk current writeset including marks not yet committed (writer only).
    private ulong[] _onDisk = [];
    // Words of _onDisk not yet published to _inCore, and words non-zero in this era's writeset.
    private readonly List<uint> _dirtyWords = new();
    private readonly List<uint> _markedWords = new();
    private DigestCursor? _digest;
    private string? _failure;
    private bool _disposed;

    private EraMetadata(BlockManager bm, EraOpenMode mode)
    {
        _bm = bm;
        _tm = new TransactionManager(bm);
        _mode = mode;
    }

    public string Path => _bm.Path;
    public uint CurrentEra => _sb.CurrentEra;
    public uint NrBlocks => _sb.NrBlocks;
    public uint DataBlockSizeSectors => _sb.DataBlockSize;

    /// <summary>Block of the metadata snapshot's superblock copy, 0 when none is held.</summary>
    public ulong MetadataSnapshot => _sb.MetadataSnap;

    public ulong NrMetadataBlocks => _msm.NrBlocks;
    public ulong MetadataBlocksUsed => _msm.NrAllocated;

    /// <summary>Set when a change failed part way; the instance then refuses changes and commits.</summary>
    public bool TransactionFailed => _failure is not null;

    /// <summary>
    /// A file size that holds a fully digested era array, several writesets, their shadow copies
    /// during a transaction and some slack; a multiple of 4 KiB, at most the metadata space map's limit.
    /// </summary>
    public static long DefaultFileSize(uint nrBlocks)
    {
        static ulong WithIndex(ulong blocks) => blocks + (blocks + 83) / 84 + 2; // + btree nodes at min occupancy
        ulong arrayBlocks = WithIndex(((ulong)nrBlocks + (ulong)ErasPerArrayBlock - 1) / (ulong)ErasPerArrayBlock);
        ulong writesetBlocks = WithIndex((Bitset.WordsFor(nrBlocks) + (ulong)WordsPerBitsetBlock - 1) / (ulong)WordsPerBitsetBlock);
        ulong blocks = 2 * (arrayBlocks + 8 * writesetBlocks) + 1024;
        blocks += blocks / SpaceMap.EntriesPerBitmap + 4; // space map bitmaps and index
        return (long)Math.Min(blocks, MetadataSpaceMap.MaxBlocks) * BlockChecksum.BlockSize;
    }

    /// <summary>
    /// Formats a new file (created or truncated to <paramref name="fileSize"/>, default
    /// <see cref="DefaultFileSize"/>) and returns it activated: era 1 with an empty writeset.
    /// The era array of a large volume is one shared fill block behind its btree.
    /// </summary>
    public static EraMetadata Create(string path, uint dataBlockSizeSectors, uint nrBlocks, long? fileSize = null)
    {
        if (dataBlockSizeSectors == 0 || dataBlockSizeSectors % 8 != 0)
            throw new ArgumentException($"data block size {dataBlockSizeSectors} sectors is not a non-zero multiple of 8", nameof(dataBlockSizeSectors));
        if (nrBlocks == 0 || nrBlocks > MaxNrBlocks)
            throw new ArgumentException($"nr_blocks {nrBlocks} must be 1..{MaxNrBlocks}", nameof(nrBlocks));
        long size = fileSize ?? DefaultFileSize(nrBlocks);
        if (size < 16 * BlockChecksum.BlockSize || size % BlockChecksum.BlockSize != 0)
            throw new ArgumentException($"metadata file size {size} must be a multiple of 4096 and at least 64 KiB", nameof(fileSize));

        using (var f = new FileStream(path, FileMode.Create, FileAccess.Write))
            f.SetLength(size);
        EraMetadata? md = null;
        try
        {
            md = Format(path, dataBlockSizeSectors, nrBlocks, currentEra: 0, uuid: default);
            md.Rollover();
            md.Commit();
            return md;
        }
        catch
        {
            md?.Close();
            ZeroSuperblock(path);
            throw;
        }
    }

    /// <summary>
    /// Opens a file at its last committed transaction. <see cref="EraOpenMode.Activate"/> is the
    /// kernel's preresume: a current writeset left by a crash (root ≠ 0) is archived under the
    /// current era, a new era starts, and the result is committed.
    /// </summary>
    public static EraMetadata Open(string path, EraOpenMode mode)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"era metadata file {path} does not exist", path);
        var md = new EraMetadata(new BlockManager(path, writable: mode == EraOpenMode.Activate), mode);
        try
        {
            md.LoadCommitted();
            if (mode == EraOpenMode.Activate)
            {
                // 2021 "recover committed writeset after crash": archive before the new era starts.
                if (md._sb.CurrentWritesetRoot != 0)
                    md.Archive();
                md.Rollover();
                md.Commit();
            }
            return md;
        }
        catch
        {
            md._failure = "open failed";
            md._bm.Dispose();
            throw;
        }
    }

    private void LoadCommitted()
    {
        var raw = new byte[BlockChecksum.BlockSize];
        _bm.ReadRaw(0, raw);
        _sb = EraSuperblock.Validate(raw, 0);
        if (_sb.NrBlocks == 0 || _sb.NrBlocks > MaxNrBlocks)
            throw new CorruptMetadataException(0, $"era superblock nr_blocks is {_sb.NrBlocks} (1..{MaxNrBlocks} allowed)");
        if (_sb.DataBlockSize == 0)
            throw new CorruptMetadataException(0, "era superblock data_block_size is 0");
        _msm = MetadataSpaceMap.Open(_tm, _sb.MetadataSpaceMapRoot);
        BuildStructures();
        _writesets.ReadNode(_sb.WritesetTreeRoot);
        ulong length = _eraArray.Length(_sb.EraArrayRoot);
        if (length != _sb.NrBlocks)
            throw new CorruptMetadataException(_sb.EraArrayRoot, $"era array holds {length} entries, the superblock says nr_blocks {_sb.NrBlocks}");
        ResetInCore();
        if (_sb.CurrentWritesetRoot != 0)
            LoadCurrentWriteset();
    }

    private void BuildStructures()
    {
        _bitset = new Bitset(_tm);
        _eraArray = new ArrayTree(_tm, sizeof(uint));
        _writesets = new BTree(_tm, new WritesetValue(_tm, _bitset));
    }

    /// <summary>The committed current writeset into the in-core copy (a read-only open of a crashed file).</summary>
    private void LoadCurrentWriteset()
    {
        uint limit = Math.Min(_sb.CurrentWritesetBits, _sb.NrBlocks);
        VisitBitsetWords(_sb.CurrentEra, new Writeset(_sb.CurrentWritesetBits, _sb.CurrentWritesetRoot), limit, (w, bits) =>
        {
            _inCore[w] = bits;
            _onDisk[w] = bits;
            _markedWords.Add(w);
        });
    }

    private void ResetInCore()
    {
        int words = (int)Bitset.WordsFor(_sb.NrBlocks);
        Volatile.Write(ref _inCore, new ulong[words]);
        _onDisk = new ulong[words];
        _dirtyWords.Clear();
        _markedWords.Clear();
    }

    // ---------------------------------------------------------------- the current writeset

    /// <summary>Whether <paramref name="block"/> is in the committed current writeset. Any thread.</summary>
    public bool IsMarked(uint block)
    {
        var bits = Volatile.Read(ref _inCore);
        if (block >= (ulong)bits.Length * 64 || block >= NrBlocks)
            throw new ArgumentOutOfRangeException(nameof(block), block, $"block is beyond the end of the volume ({NrBlocks} blocks)");
        return (Volatile.Read(ref bits[block >> 6]) & (1UL << (int)(block & 63))) != 0;
    }

    /// <summary>Whether every block in [<paramref name="firstBlock"/>, <paramref name="endBlock"/>) is marked and committed. Any thread.</summary>
    public bool AreAllMarked(uint firstBlock, uint endBlock)
    {
        var bits = Volatile.Read(ref _inCore);
        CheckRange(firstBlock, endBlock);
        uint b = firstBlock;
        while (b < endBlock)
        {
            int bit = (int)(b & 63);
            uint span = Math.Min(endBlock - b, 64u - (uint)bit);
            ulong mask = span == 64 ? ulong.MaxValue : ((1UL << (int)span) - 1) << bit;
            if ((Volatile.Read(ref bits[b >> 6]) & mask) != mask)
                return false;
            b += span;
        }
        return true;
    }

    /// <summary>
    /// Sets blocks [<paramref name="firstBlock"/>, <paramref name="endBlock"/>) in the on-disk current
    /// writeset, inside the open transaction; <see cref="IsMarked"/> sees them after <see cref="Commit"/>.
    /// </summary>
    public void Mark(uint firstBlock, uint endBlock)
    {
        RequireWritable();
        CheckRange(firstBlock, endBlock);
        try
        {
            uint b = firstBlock;
            ulong root = _sb.CurrentWritesetRoot;
            Memory<byte> block = default;
            ulong blockIndex = ulong.MaxValue;
            while (b < endBlock)
            {
                int bit = (int)(b & 63);
                uint span = Math.Min(endBlock - b, 64u - (uint)bit);
                ulong mask = span == 64 ? ulong.MaxValue : ((1UL << (int)span) - 1) << bit;
                uint w = b >> 6;
                ulong old = _onDisk[w];
                if ((old | mask) != old)
                {
                    ulong k = w / (ulong)WordsPerBitsetBlock;
                    if (k != blockIndex)
                    {
                        block = _bitset.Words.WritableBlock(ref root, k);
                        blockIndex = k;
                    }
                    int offset = (int)(w % (ulong)WordsPerBitsetBlock) * sizeof(ulong);
                    BinaryPrimitives.WriteUInt64LittleEndian(block.Span[offset..], old | mask);
                    if (old == 0)
                        _markedWords.Add(w);
                    if (old == _inCore[w])
                        _dirtyWords.Add(w);
                    _onDisk[w] = old | mask;
                }
                b += span;
            }
            _sb.CurrentWritesetRoot = root;
            _bm.Trim();
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    // ---------------------------------------------------------------- transactions and eras

    /// <summary>
    /// Writes every changed metadata block, fsync, the superblock, fsync; then publishes the committed
    /// marks to the in-core writeset. The caller's data must already be durable.
    /// </summary>
    public void Commit()
    {
        RequireWritable();
        try
        {
            _sb.MetadataSpaceMapRoot = _msm.Commit();
            _bm.FlushDirty();
            _bm.WriteSuperblock(0, _sb.Raw, BlockKind.EraSuperblock);
            _msm.OnCommitted();
            _tm.EndTransaction();
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
        var inCore = _inCore;
        foreach (uint w in _dirtyWords)
            Volatile.Write(ref inCore[w], _onDisk[w]);
        _dirtyWords.Clear();
    }

    /// <summary>
    /// Rollover (metadata_era_rollover) and commit: the current writeset, with any pending marks, is
    /// archived under <see cref="CurrentEra"/>; a new empty writeset starts era + 1. Returns the new era.
    /// </summary>
    public uint Checkpoint()
    {
        RequireWritable();
        try
        {
            Rollover();
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
        Commit();
        return CurrentEra;
    }

    private void Rollover()
    {
        if (_sb.CurrentEra == uint.MaxValue)
            throw new InvalidOperationException("the era counter is exhausted (4294967295)");
        if (_sb.CurrentWritesetRoot != 0)
            Archive();
        _sb.CurrentWritesetRoot = _bitset.Create(_sb.NrBlocks);
        _sb.CurrentWritesetBits = _sb.NrBlocks;
        _sb.CurrentEra++;
        ResetInCore();
    }

    /// <summary>metadata_era_archive: the current writeset goes into the writeset tree under the current era.</summary>
    private void Archive()
    {
        Span<byte> v = stackalloc byte[Writeset.Size];
        new Writeset(_sb.CurrentWritesetBits, _sb.CurrentWritesetRoot).Write(v);
        ulong root = _sb.WritesetTreeRoot;
        _writesets.Insert(ref root, _sb.CurrentEra, v);
        _sb.WritesetTreeRoot = root;
        _sb.CurrentWritesetRoot = 0;
    }

    /// <summary>Eras of the archived, not yet digested writesets, ascending.</summary>
    public IReadOnlyList<uint> ArchivedEras
    {
        get
        {
            var eras = new List<uint>();
            VisitArchived(0, (era, _) =>
            {
                eras.Add(era);
                return true;
            });
            return eras;
        }
    }

    private void VisitArchived(uint fromEra, Func<uint, Writeset, bool> visit) =>
        _writesets.VisitRange(_sb.WritesetTreeRoot, fromEra, ulong.MaxValue, (k, v) => visit((uint)k, Writeset.Read(v)));

    private bool TryLowestArchived(out uint era, out Writeset writeset)
    {
        uint e = 0;
        Writeset w = default;
        bool found = false;
        VisitArchived(0, (k, v) =>
        {
            (e, w, found) = (k, v, true);
            return false;
        });
        (era, writeset) = (e, w);
        return found;
    }

    // ---------------------------------------------------------------- digest

    /// <summary>
    /// One bounded step of the background digest: the oldest archived writeset with era &lt;
    /// <paramref name="belowEra"/> is copied into the era array (at most <paramref name="maxBits"/> bit
    /// positions examined; all-zero array blocks are skipped for free) and removed from the tree, which
    /// frees its bitset, once finished. Does not commit. Returns true while digest work for eras below
    /// <paramref name="belowEra"/> remains.
    /// </summary>
    public bool DigestStep(uint belowEra, int maxBits = 65536)
    {
        RequireWritable();
        if (maxBits < 64)
            throw new ArgumentOutOfRangeException(nameof(maxBits), maxBits, "a digest step examines at least 64 bits");
        try
        {
            if (_digest is null)
            {
                if (!TryLowestArchived(out uint era, out var ws) || era >= belowEra)
                    return false;
                _digest = new DigestCursor(era, ws);
            }
            var d = _digest;
            if (TranscribeSome(d, maxBits))
            {
                ulong root = _sb.WritesetTreeRoot;
                if (!_writesets.Remove(ref root, d.Era))
                    throw new CorruptMetadataException(root, $"archived writeset of era {d.Era} vanished during its digest");
                _sb.WritesetTreeRoot = root;
                _digest = null;
            }
            _bm.Trim();
            return _digest is not null || (TryLowestArchived(out uint next, out _) && next < belowEra);
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    /// <summary>Sets era_array[b] = era for set bits from the cursor on. Returns true when the writeset is done.</summary>
    private bool TranscribeSome(DigestCursor d, int maxBits)
    {
        ulong limit = Math.Min(d.Writeset.NrBits, _sb.NrBlocks);
        ulong limitWords = Bitset.WordsFor(limit);
        long budget = maxBits;
        ulong root = _sb.EraArrayRoot;
        Memory<byte> eraBlock = default;
        ulong eraBlockIndex = ulong.MaxValue;
        ulong firstBlock = d.NextWord / (ulong)WordsPerBitsetBlock;
        ulong lastBlock = (limitWords + (ulong)WordsPerBitsetBlock - 1) / (ulong)WordsPerBitsetBlock;
        bool stopped = false;
        _bitset.Words.VisitBlockRange(d.Writeset.Root, firstBlock, lastBlock, (k, loc, values) =>
        {
            if (d.ZeroBlocks.Contains(loc))
            {
                d.NextWord = (k + 1) * (ulong)WordsPerBitsetBlock;
                return true;
            }
            if (values.IndexOfAnyExcept((byte)0) < 0)
            {
                d.ZeroBlocks.Add(loc);
                d.NextWord = (k + 1) * (ulong)WordsPerBitsetBlock;
                return true;
            }
            ulong wordBase = k * (ulong)WordsPerBitsetBlock;
            int nr = values.Length / sizeof(ulong);
            for (int i = (int)(Math.Max(d.NextWord, wordBase) - wordBase); i < nr; i++)
            {
                if (budget <= 0)
                {
                    d.NextWord = wordBase + (ulong)i;
                    stopped = true;
                    return false;
                }
                budget -= 64;
                ulong w = BinaryPrimitives.ReadUInt64LittleEndian(values[(i * sizeof(ulong))..]);
                ulong bitBase = (wordBase + (ulong)i) * 64;
                while (w != 0)
                {
                    ulong b = bitBase + (ulong)System.Numerics.BitOperations.TrailingZeroCount(w);
                    w &= w - 1;
                    if (b >= limit)
                        break;
                    ulong eb = b / (ulong)ErasPerArrayBlock;
                    if (eb != eraBlockIndex)
                    {
                        eraBlock = _eraArray.WritableBlock(ref root, eb);
                        eraBlockIndex = eb;
                    }
                    BinaryPrimitives.WriteUInt32LittleEndian(eraBlock.Span[(int)(b % (ulong)ErasPerArrayBlock * sizeof(uint))..], d.Era);
                }
            }
            d.NextWord = wordBase + (ulong)nr;
            return true;
        });
        _sb.EraArrayRoot = root;
        return !stopped;
    }

    private sealed class DigestCursor(uint era, Writeset writeset)
    {
        public uint Era { get; } = era;
        public Writeset Writeset { get; } = writeset;
        public ulong NextWord { get; set; }

        // Locations of all-zero blocks of this bitset; it is immutable while archived, so they stay valid.
        public HashSet<ulong> ZeroBlocks { get; } = new();
    }

    // ---------------------------------------------------------------- queries

    /// <summary>
    /// Blocks written since era <paramref name="era"/>: era_array[b] ≥ era (the array is read only when
    /// an era ≥ <paramref name="era"/> may already be digested into it), archived writesets with era ≥
    /// <paramref name="era"/>, and the committed current writeset if <see cref="CurrentEra"/> ≥ era.
    /// Calls <paramref name="run"/>(first, endExclusive) for maximal runs, ascending. While the writesets
    /// are undigested the cost follows their btree leaves and the changes, not the volume size.
    /// Era 0: every block (era_array[b] ≥ 0 always holds, as era_invalidate reports).
    /// </summary>
    public void WrittenSince(uint era, Action<uint, uint> run) => WrittenSince(era, before: uint.MaxValue, run);

    /// <summary>
    /// Blocks written in eras [<paramref name="era"/>, <paramref name="before"/>): exact while those
    /// eras' writesets are undigested; where the era array must be read it yields every block whose
    /// last digested era is ≥ <paramref name="era"/> (a later write hides an earlier one there), a
    /// superset, never a loss. The current writeset counts only when <see cref="CurrentEra"/> &lt;
    /// <paramref name="before"/>.
    /// </summary>
    public void WrittenSince(uint era, uint before, Action<uint, uint> run)
    {
        ArgumentNullException.ThrowIfNull(run);
        if (era == 0)
        {
            run(0, NrBlocks);
            return;
        }
        if (before <= era)
            return;
        var set = new BlockSet();
        bool anyArchived = TryLowestArchived(out uint lowest, out _);
        // Digest goes oldest first, so every era array value is ≤ the lowest archived era (and one equal
        // to it is still in that writeset), or < the current era when nothing is archived.
        if (anyArchived ? era < lowest : era < CurrentEra)
            AddEraArray(era, set);
        uint nrBlocks = NrBlocks;
        VisitArchived(era, (e, ws) =>
        {
            if (e >= before)
                return false;
            VisitBitsetWords(e, ws, Math.Min(ws.NrBits, nrBlocks), set.AddWord);
            return true;
        });
        if (CurrentEra >= era && CurrentEra < before)
        {
            var inCore = _inCore;
            foreach (uint w in _markedWords)
                set.AddWord(w, inCore[w]);
        }
        _bm.Trim();
        set.EmitRuns(run);
    }

    private void AddEraArray(uint era, BlockSet set)
    {
        var below = new HashSet<ulong>(); // locations whose values are all < era (shared fill blocks repeat)
        uint nrBlocks = NrBlocks;
        ArrayWalk.Blocks(_eraArray, _sb.EraArrayRoot, nrBlocks, "era array", (k, loc, values) =>
        {
            if (below.Contains(loc))
                return true;
            bool any = false;
            ulong first = k * (ulong)ErasPerArrayBlock;
            for (int i = 0; i * sizeof(uint) < values.Length; i++)
            {
                if (BinaryPrimitives.ReadUInt32LittleEndian(values[(i * sizeof(uint))..]) >= era && first + (ulong)i < nrBlocks)
                {
                    set.Add((uint)(first + (ulong)i));
                    any = true;
                }
            }
            if (!any)
                below.Add(loc);
            return true;
        });
    }

    /// <summary>
    /// Calls <paramref name="word"/> for every non-zero word of a writeset's bitset, masked to the first
    /// <paramref name="nrBits"/> bits; skips repeated all-zero blocks (a fresh writeset's fill block).
    /// </summary>
    private void VisitBitsetWords(uint era, Writeset ws, uint nrBits, Action<uint, ulong> word)
    {
        var zero = new HashSet<ulong>();
        ulong words = Bitset.WordsFor(nrBits);
        ArrayWalk.Blocks(_bitset.Words, ws.Root, Bitset.WordsFor(ws.NrBits), $"writeset of era {era}", (k, loc, values) =>
        {
            if (zero.Contains(loc))
                return true;
            ulong wordBase = k * (ulong)WordsPerBitsetBlock;
            bool any = false;
            for (int i = 0; i * sizeof(ulong) < values.Length && wordBase + (ulong)i < words; i++)
            {
                ulong w = BinaryPrimitives.ReadUInt64LittleEndian(values[(i * sizeof(ulong))..]);
                ulong wi = wordBase + (ulong)i;
                if (wi == words - 1 && nrBits % 64 != 0)
                    w &= (1UL << (int)(nrBits % 64)) - 1;
                if (w != 0)
                {
                    word((uint)wi, w);
                    any = true;
                }
            }
            if (!any)
                zero.Add(loc);
            return true;
        });
    }

    // ---------------------------------------------------------------- metadata snapshot

    /// <summary>
    /// take_metadata_snap: rollover and commit, then a copy of the superblock that shares the writeset
    /// tree and the era array by reference count, recorded as metadata_snap; commits.
    /// era_invalidate --metadata-snapshot reads it. Unlike the kernel the copy's current writeset is
    /// cleared: it would name a writeset the snapshot holds no reference to.
    /// </summary>
    public void TakeMetadataSnapshot()
    {
        RequireWritable();
        if (_sb.MetadataSnap != 0)
            throw new InvalidOperationException($"a metadata snapshot already exists at block {_sb.MetadataSnap}");
        Checkpoint();
        try
        {
            var copy = _tm.New(BlockKind.EraSuperblock);
            _sb.Raw.AsSpan(4).CopyTo(copy.Data.AsSpan(4));
            var snap = new EraSuperblock(copy.Data) { CurrentWritesetRoot = 0, MetadataSnap = 0 };
            _tm.Inc(snap.WritesetTreeRoot);
            _tm.Inc(snap.EraArrayRoot);
            _sb.MetadataSnap = copy.Location;
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
        Commit();
    }

    /// <summary>drop_metadata_snap: the copy's trees lose a reference (what is unshared is freed), then the copy; commits.</summary>
    public void DropMetadataSnapshot()
    {
        RequireWritable();
        ulong held = _sb.MetadataSnap;
        if (held == 0)
            throw new InvalidOperationException("no metadata snapshot is held");
        try
        {
            var raw = new byte[BlockChecksum.BlockSize];
            _bm.ReadRaw(held, raw);
            var snap = EraSuperblock.Validate(raw, held);
            _writesets.Delete(snap.WritesetTreeRoot);
            _eraArray.Delete(snap.EraArrayRoot);
            _tm.Dec(held);
            _sb.MetadataSnap = 0;
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
        Commit();
    }

    // ---------------------------------------------------------------- restore (era_restore)

    /// <summary>
    /// Formats metadata in an existing file for a restore: the given era, uuid and data block size, no
    /// current writeset, an era array of zeroes. Nothing is durable until <see cref="Commit"/>; the
    /// instance is then closed with <see cref="Close"/> (no archive, no new era).
    /// </summary>
    internal static EraMetadata Format(string path, uint dataBlockSizeSectors, uint nrBlocks, uint currentEra, ReadOnlySpan<byte> uuid)
    {
        var md = new EraMetadata(new BlockManager(path, writable: true), EraOpenMode.Activate);
        try
        {
            md._msm = MetadataSpaceMap.Create(md._tm, Math.Min(md._bm.NrBlocks, MetadataSpaceMap.MaxBlocks));
            md.BuildStructures();
            var sb = EraSuperblock.CreateEmpty();
            sb.SetUuid(uuid);
            sb.DataBlockSize = dataBlockSizeSectors;
            sb.NrBlocks = nrBlocks;
            sb.CurrentEra = currentEra;
            sb.WritesetTreeRoot = md._writesets.CreateEmpty();
            sb.EraArrayRoot = md._eraArray.Create(nrBlocks, stackalloc byte[sizeof(uint)]);
            md._sb = sb;
            md.ResetInCore();
            return md;
        }
        catch
        {
            md.Close();
            throw;
        }
    }

    /// <summary>Adds an archived writeset of <paramref name="nrBits"/> bits with the given non-zero words (restore).</summary>
    internal void RestoreWriteset(uint era, uint nrBits, IReadOnlyDictionary<uint, ulong> words)
    {
        RequireWritable();
        try
        {
            ulong root = _bitset.Create(nrBits);
            var order = words.Keys.ToArray();
            Array.Sort(order);
            Memory<byte> block = default;
            ulong blockIndex = ulong.MaxValue;
            foreach (uint w in order)
            {
                ulong k = w / (ulong)WordsPerBitsetBlock;
                if (k != blockIndex)
                {
                    block = _bitset.Words.WritableBlock(ref root, k);
                    blockIndex = k;
                }
                BinaryPrimitives.WriteUInt64LittleEndian(block.Span[((int)(w % (ulong)WordsPerBitsetBlock) * sizeof(ulong))..], words[w]);
            }
            Span<byte> v = stackalloc byte[Writeset.Size];
            new Writeset(nrBits, root).Write(v);
            ulong tree = _sb.WritesetTreeRoot;
            _writesets.Insert(ref tree, era, v);
            _sb.WritesetTreeRoot = tree;
            _bm.Trim();
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    /// <summary>
    /// The u32 eras of era-array block <paramref name="arrayBlock"/>, writable (restore); valid until the
    /// next change to the metadata.
    /// </summary>
    internal Memory<byte> WritableEraBlock(ulong arrayBlock)
    {
        RequireWritable();
        try
        {
            ulong root = _sb.EraArrayRoot;
            var block = _eraArray.WritableBlock(ref root, arrayBlock);
            _sb.EraArrayRoot = root;
            return block;
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    /// <summary>Closes the file without archiving or committing anything further.</summary>
    internal void Close()
    {
        _failure ??= "closed";
        Dispose();
    }

    // ---------------------------------------------------------------- plumbing

    private void CheckRange(uint first, uint end)
    {
        if (first > end || end > NrBlocks)
            throw new ArgumentOutOfRangeException(nameof(end), $"blocks [{first}, {end}) are not a range inside the volume ({NrBlocks} blocks)");
    }

    private void RequireWritable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_mode != EraOpenMode.Activate)
            throw new InvalidOperationException($"era metadata {Path} is open read-only");
        if (_failure is not null)
            throw new InvalidOperationException($"an era metadata transaction failed ({_failure}); reopen the file to recover the last commit");
    }

    /// <summary>
    /// Exception filter of every change: a change that failed part way (metadata space exhausted, a
    /// corrupt block) leaves the transaction inconsistent, so further changes are refused; the last
    /// commit stays intact on disk and a reopen recovers it. Returns false so the exception propagates.
    /// </summary>
    private bool Poison(Exception e)
    {
        if (e is not ArgumentException)
            _failure = e.Message;
        return false;
    }

    /// <summary>Zeroes block 0 so a half-written file is never taken for metadata (the tools do the same).</summary>
    internal static void ZeroSuperblock(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.Write(new byte[BlockChecksum.BlockSize]);
        f.Flush(flushToDisk: true);
    }

    /// <summary>
    /// Clean shutdown (the kernel's postsuspend): the current writeset is archived (root 0 on disk)
    /// and committed. A read-only instance, or one whose transaction failed, writes nothing.
    /// </summary>
    public void Dispose()
    {
        if (_disposed)
            return;
        try
        {
            if (_mode == EraOpenMode.Activate && _failure is null)
            {
                if (_sb.CurrentWritesetRoot != 0)
                {
                    try
                    {
                        Archive();
                    }
                    catch (Exception e) when (Poison(e))
                    {
                        throw; // not reached: Poison only records the failure
                    }
                }
                Commit();
            }
        }
        finally
        {
            _disposed = true;
            _bm.Dispose();
        }
    }
}
