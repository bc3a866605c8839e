using System.Buffers.Binary;
using BackupAppliance.Core;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin;

/// <summary>
/// dm-thin pool metadata (dm-thin-metadata.c) in the kernel's on-disk format: thin devices, O(1)
/// snapshots that share mapping subtrees by reference count, mappings, device details, the pool's
/// time and transaction id, a metadata snapshot (held root) and the needs_check flag.
/// Changes are transactional: nothing is visible on disk until <see cref="Commit"/>, which flushes the
/// caller's data first, then the metadata blocks, then the superblock. Not thread-safe: the owner
/// (the pool) serialises access.
/// </summary>
public sealed class ThinMetadata : IDisposable
{
    public const ulong MaxDeviceId = (1UL << 24) - 1;
    public const uint MinDataBlockSize = 128;
    public const uint MaxDataBlockSize = 2097152;

    private readonly BlockManager _bm;
    private readonly TransactionManager _tm;
    private MetadataSpaceMap _msm = null!;
    private DiskSpaceMap _dsm = null!;
    private BTree _details = null!;
    private BTree _top = null!;
    private BTree _mappings = null!;
    private ThinSuperblock _sb = null!;
    private readonly Dictionary<ulong, DeviceDetails> _changedDetails = new();
    private readonly HashSet<ulong> _topPathShadowed = new();
    private bool _dirty;
    private string? _failure;

    private ThinMetadata(BlockManager bm)
    {
        _bm = bm;
        _tm = new TransactionManager(bm);
    }

    public string Path => _bm.Path;
    public bool Writable => _bm.Writable;
    public uint Time => _sb.Time;
    public ulong TransactionId => _sb.TransactionId;
    public ulong HeldRoot => _sb.HeldRoot;
    public bool NeedsCheck => _sb.NeedsCheck;
    public uint DataBlockSize => _sb.DataBlockSize;
    public ulong NrDataBlocks => _dsm.NrBlocks;
    public ulong DataBlocksUsed => _dsm.NrAllocated;
    public ulong NrMetadataBlocks => _msm.NrBlocks;
    public ulong MetadataBlocksUsed => _msm.NrAllocated;
    public bool HasUncommittedChanges => _dirty || _changedDetails.Count > 0 || _msm.IsDirty || _dsm.IsDirty;

    /// <summary>The superblock as last committed (a copy).</summary>
    public ThinSuperblock Superblock => _sb.Clone();

    /// <summary>
    /// Formats a new pool's metadata in an existing file (its size decides the metadata blocks, capped
    /// at the kernel's 4,161,600). <paramref name="dataBlockSize"/> is in 512-byte sectors.
    /// </summary>
    public static ThinMetadata Create(string path, uint dataBlockSize, ulong nrDataBlocks, uint version = ThinSuperblock.KernelVersion)
    {
        if (dataBlockSize < MinDataBlockSize || dataBlockSize > MaxDataBlockSize || dataBlockSize % MinDataBlockSize != 0)
            throw new ArgumentException($"data block size {dataBlockSize} sectors is not a multiple of {MinDataBlockSize} between {MinDataBlockSize} and {MaxDataBlockSize}");
        var bm = new BlockManager(path, writable: true);
        if (bm.NrBlocks < 8)
        {
            bm.Dispose();
            throw new ArgumentException($"metadata file {path} is too small ({bm.NrBlocks} blocks of 4 KiB; at least 8 needed)");
        }
        var md = new ThinMetadata(bm);
        try
        {
            ulong nrMeta = Math.Min(bm.NrBlocks, MetadataSpaceMap.MaxBlocks);
            md._msm = MetadataSpaceMap.Create(md._tm, nrMeta);
            md._dsm = DiskSpaceMap.Create(md._tm, nrDataBlocks);
            md.BuildTrees();
            var sb = ThinSuperblock.CreateEmpty();
            sb.Version = version;
            sb.DataBlockSize = dataBlockSize;
            sb.MetadataBlockSize = ThinSuperblock.MetadataBlockSizeSectors;
            sb.MetadataNrBlocks = nrMeta;
            sb.DataMappingRoot = md._top.CreateEmpty();
            sb.DeviceDetailsRoot = md._details.CreateEmpty();
            md._sb = sb;
            md._dirty = true;
            md.Commit();
            return md;
        }
        catch
        {
            md.Dispose();
            throw;
        }
    }

    /// <summary>Opens existing metadata at its last committed transaction; refuses corrupt or unsupported files.</summary>
    public static ThinMetadata Open(string path, bool writable = true, int cacheBlocks = 16384)
    {
        var bm = new BlockManager(path, writable, cacheBlocks);
        var md = new ThinMetadata(bm);
        try
        {
            md.LoadCommitted();
            if (writable && md._sb.CompatRoFlags != 0)
                throw new CorruptMetadataException(0, $"superblock has compat_ro_flags 0x{md._sb.CompatRoFlags:x}; refusing to open read-write");
            return md;
        }
        catch
        {
            md.Dispose();
            throw;
        }
    }

    private void LoadCommitted()
    {
        var raw = new byte[BlockChecksum.BlockSize];
        _bm.ReadRaw(0, raw);
        _sb = ValidateSuperblock(raw, 0);
        _msm = MetadataSpaceMap.Open(_tm, _sb.MetadataSpaceMapRoot);
        _dsm = DiskSpaceMap.Open(_tm, _sb.DataSpaceMapRoot);
        BuildTrees();
        _changedDetails.Clear();
        _dirty = false;
        // Walk the roots once so a corrupt root is refused at open, not on first use.
        _top.ReadNode(_sb.DataMappingRoot);
        _details.ReadNode(_sb.DeviceDetailsRoot);
    }

    internal static ThinSuperblock ValidateSuperblock(byte[] raw, ulong location)
    {
        BlockChecksum.Validate(raw, location, BlockKind.ThinSuperblock);
        var sb = new ThinSuperblock(raw);
        if (sb.MagicField != ThinSuperblock.Magic)
            throw new CorruptMetadataException(location, $"superblock magic is {sb.MagicField}, expected {ThinSuperblock.Magic}");
        if (sb.MetadataBlockSize != ThinSuperblock.MetadataBlockSizeSectors)
            throw new CorruptMetadataException(location, $"superblock metadata_block_size is {sb.MetadataBlockSize} sectors, expected 8");
        if (sb.IncompatFlags != 0)
            throw new CorruptMetadataException(location, $"superblock has unsupported incompat_flags 0x{sb.IncompatFlags:x}");
        return sb;
    }

    private void BuildTrees()
    {
        _details = new BTree(_tm, new PlainValue(DeviceDetails.Size));
        _mappings = new BTree(_tm, new MappingValue(_dsm));
        _top = new BTree(_tm, new SubtreeValue(_tm, () => _mappings));
    }

    // ---------------------------------------------------------------- devices

    public bool DeviceExists(ulong dev)
    {
        Span<byte> v = stackalloc byte[8];
        return _top.Lookup(_sb.DataMappingRoot, dev, v);
    }

    public IReadOnlyList<ulong> DeviceIds()
    {
        var ids = new List<ulong>();
        _top.VisitLeaves(_sb.DataMappingRoot, n =>
        {
            for (int i = 0; i < n.NrEntries; i++)
                ids.Add(n.Key(i));
        });
        return ids;
    }

    public DeviceDetails GetDetails(ulong dev)
    {
        if (_changedDetails.TryGetValue(dev, out var d))
            return d;
        Span<byte> v = stackalloc byte[DeviceDetails.Size];
        if (!_details.Lookup(_sb.DeviceDetailsRoot, dev, v))
            throw new KeyNotFoundException($"thin device {dev} does not exist");
        return DeviceDetails.Read(v);
    }

    public void CreateThin(ulong dev)
    {
        RequireWritable();
        try
        {
            CheckNewId(dev);
            ulong root = _mappings.CreateEmpty();
            InsertTop(dev, root);
            _changedDetails[dev] = new DeviceDetails(0, _sb.TransactionId, _sb.Time, _sb.Time);
            _dirty = true;
            Trim();
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    /// <summary>create_snap: the new device shares the origin's whole mapping tree (O(1)); time advances.</summary>
    public void CreateSnapshot(ulong dev, ulong origin)
    {
        RequireWritable();
        try
        {
            CheckNewId(dev);
            ulong root = MappingRoot(origin);
            var originDetails = GetDetails(origin);
            _tm.Inc(root);
            InsertTop(dev, root);
            _sb.Time++;
            _changedDetails[origin] = originDetails with { SnapshottedTime = _sb.Time };
            _changedDetails[dev] = new DeviceDetails(originDetails.MappedBlocks, _sb.TransactionId, _sb.Time, _sb.Time);
            _dirty = true;
            Trim();
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    /// <summary>Deletes a device; mapping blocks and data blocks still shared with others stay.</summary>
    public void DeleteDevice(ulong dev)
    {
        RequireWritable();
        try
        {
            if (!DeviceExists(dev))
                throw new KeyNotFoundException($"thin device {dev} does not exist");
            _topPathShadowed.Clear();
            ulong top = _sb.DataMappingRoot;
            _top.Remove(ref top, dev);
            _sb.DataMappingRoot = top;
            ulong det = _sb.DeviceDetailsRoot;
            _details.Remove(ref det, dev);
            _sb.DeviceDetailsRoot = det;
            _changedDetails.Remove(dev);
            _dirty = true;
            Trim();
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    /// <summary>Sets a device's details verbatim (restore from XML).</summary>
    public void SetDetails(ulong dev, DeviceDetails details)
    {
        RequireWritable();
        GetDetails(dev);
        _changedDetails[dev] = details;
    }

    private void CheckNewId(ulong dev)
    {
        if (dev > MaxDeviceId)
            throw new ArgumentException($"thin device id {dev} is too large (max {MaxDeviceId})");
        if (DeviceExists(dev))
            throw new ArgumentException($"thin device {dev} already exists");
    }

    private ulong MappingRoot(ulong dev)
    {
        Span<byte> v = stackalloc byte[8];
        if (!_top.Lookup(_sb.DataMappingRoot, dev, v))
            throw new KeyNotFoundException($"thin device {dev} does not exist");
        return BinaryPrimitives.ReadUInt64LittleEndian(v);
    }

    private void InsertTop(ulong dev, ulong subtreeRoot)
    {
        _topPathShadowed.Clear(); // a split may have moved other devices' entries to new nodes
        Span<byte> v = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(v, subtreeRoot);
        ulong top = _sb.DataMappingRoot;
        _top.Insert(ref top, dev, v);
        _sb.DataMappingRoot = top;
    }

    /// <summary>
    /// Shadows the top-level path to a device before its subtree is touched, as the kernel's
    /// multi-level insert does on its way down: if the top level is shared (a metadata snapshot),
    /// copying it gives the subtree root its second reference first, so the subtree is then seen as
    /// shared and copied rather than freed under the snapshot.
    /// </summary>
    private ulong PrepareDeviceRoot(ulong dev)
    {
        ulong root = MappingRoot(dev);
        if (_topPathShadowed.Add(dev))
        {
            Span<byte> v = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(v, root);
            ulong top = _sb.DataMappingRoot;
            _top.Repoint(ref top, dev, v);
            _sb.DataMappingRoot = top;
        }
        return root;
    }

    /// <summary>Points the top level at a device's (shadowed) subtree; the shadow already moved the reference.</summary>
    private void PatchTop(ulong dev, ulong oldRoot, ulong newRoot)
    {
        if (oldRoot == newRoot)
            return;
        Span<byte> v = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(v, newRoot);
        ulong top = _sb.DataMappingRoot;
        _top.Repoint(ref top, dev, v);
        _sb.DataMappingRoot = top;
    }

    // ---------------------------------------------------------------- mappings

    public ThinMapping? Lookup(ulong dev, ulong vblock)
    {
        Span<byte> v = stackalloc byte[8];
        bool found = _mappings.Lookup(MappingRoot(dev), vblock, v);
        Trim();
        if (!found)
            return null;
        var bt = BlockTime.Unpack(BinaryPrimitives.ReadUInt64LittleEndian(v));
        return new ThinMapping(bt.DataBlock, bt.Time, GetDetails(dev).SnapshottedTime > bt.Time);
    }

    /// <summary>
    /// Maps <paramref name="vblock"/> to <paramref name="dataBlock"/>, stamped with the pool's time.
    /// The caller hands over one reference to the data block (from <see cref="AllocateDataBlock"/> or
    /// <see cref="IncDataBlock"/>); a replaced mapping drops its own.
    /// </summary>
    public void Insert(ulong dev, ulong vblock, ulong dataBlock, uint? time = null)
    {
        RequireWritable();
        try
        {
            if (dataBlock >= _dsm.NrBlocks)
                throw new ArgumentException($"data block {dataBlock} is beyond the end of the data device ({_dsm.NrBlocks} blocks)");
            ulong oldRoot = PrepareDeviceRoot(dev);
            ulong root = oldRoot;
            Span<byte> v = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(v, new BlockTime(dataBlock, time ?? _sb.Time).Pack());
            bool added = _mappings.Insert(ref root, vblock, v);
            PatchTop(dev, oldRoot, root);
            if (added)
                AdjustMappedBlocks(dev, +1);
            _dirty = true;
            Trim();
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    /// <summary>Unmaps a virtual block (discard). Returns false if it was not mapped.</summary>
    public bool Remove(ulong dev, ulong vblock)
    {
        RequireWritable();
        try
        {
            ulong oldRoot = PrepareDeviceRoot(dev);
            ulong root = oldRoot;
            bool removed = _mappings.Remove(ref root, vblock);
            PatchTop(dev, oldRoot, root);
            if (removed)
                AdjustMappedBlocks(dev, -1);
            _dirty = true;
            Trim();
            return removed;
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    private void AdjustMappedBlocks(ulong dev, int delta)
    {
        var d = GetDetails(dev);
        _changedDetails[dev] = d with { MappedBlocks = (ulong)((long)d.MappedBlocks + delta) };
    }

    /// <summary>Mappings of <paramref name="dev"/> with virtual blocks in [from, to), in order; false from the callback stops.</summary>
    public void VisitMappingRange(ulong dev, ulong from, ulong to, Func<ulong, BlockTime, bool> mapping)
    {
        _mappings.VisitRange(MappingRoot(dev), from, to, (k, v) => mapping(k, BlockTime.Unpack(BinaryPrimitives.ReadUInt64LittleEndian(v))));
        Trim();
    }

    /// <summary>Grows the data device to <paramref name="nrBlocks"/> (the caller grows the data file first); commits.</summary>
    public void ResizeData(ulong nrBlocks)
    {
        RequireWritable();
        if (nrBlocks < _dsm.NrBlocks)
            throw new ArgumentException($"the data device cannot shrink ({_dsm.NrBlocks} blocks now, {nrBlocks} asked)");
        try
        {
            _dsm.Extend(nrBlocks);
            _dirty = true;
            Commit();
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    /// <summary>Grows the metadata file and its space map to <paramref name="nrBlocks"/> 4 KiB blocks; commits.</summary>
    public void ResizeMetadata(ulong nrBlocks)
    {
        RequireWritable();
        nrBlocks = Math.Min(nrBlocks, MetadataSpaceMap.MaxBlocks);
        if (nrBlocks < _msm.NrBlocks)
            throw new ArgumentException($"the metadata device cannot shrink ({_msm.NrBlocks} blocks now, {nrBlocks} asked)");
        try
        {
            if (_bm.NrBlocks < nrBlocks)
                _bm.SetNrBlocks(nrBlocks);
            _msm.Extend(nrBlocks);
            _dirty = true;
            Commit();
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    /// <summary>Visits a device's mappings in virtual-block order (leaf by leaf).</summary>
    public void VisitMappings(ulong dev, Action<BTreeNode> leaf) => _mappings.VisitLeaves(MappingRoot(dev), leaf);

    public ulong AllocateDataBlock()
    {
        RequireWritable();
        _dirty = true;
        return _dsm.Allocate();
    }

    public void IncDataBlock(ulong dataBlock) => _dsm.Inc(dataBlock);
    public void DecDataBlock(ulong dataBlock) => _dsm.Dec(dataBlock);
    public uint DataBlockRefCount(ulong dataBlock) => _dsm.Count(dataBlock);

    // ---------------------------------------------------------------- pool state

    public void SetTransactionId(ulong current, ulong next)
    {
        RequireWritable();
        if (_sb.TransactionId != current)
            throw new InvalidOperationException($"transaction id is {_sb.TransactionId}, not {current}");
        _sb.TransactionId = next;
        _dirty = true;
    }

    /// <summary>Restore only: sets superblock fields that normally evolve by themselves.</summary>
    public void SetSuperblockFields(uint time, ulong transactionId, uint flags, ReadOnlySpan<byte> uuid)
    {
        RequireWritable();
        _sb.Time = time;
        _sb.TransactionId = transactionId;
        _sb.Flags = flags;
        _sb.SetUuid(uuid);
        _dirty = true;
    }

    /// <summary>Sets or clears needs_check and makes it durable at once (the kernel writes it immediately).</summary>
    public void SetNeedsCheck(bool value)
    {
        RequireWritable();
        var committed = new byte[BlockChecksum.BlockSize];
        _bm.ReadRaw(0, committed);
        var sb = new ThinSuperblock(committed) { NeedsCheck = value };
        _bm.WriteSuperblock(0, sb.Raw, BlockKind.ThinSuperblock);
        _sb.NeedsCheck = value;
    }

    // ---------------------------------------------------------------- metadata snapshot

    /// <summary>
    /// reserve_metadata_snap: commits, copies the superblock to a new block that holds the current
    /// trees (shared by reference count), and records it as held_root. Returns the copy's block.
    /// </summary>
    public ulong ReserveMetadataSnapshot()
    {
        RequireWritable();
        if (_sb.HeldRoot != 0)
            throw new InvalidOperationException($"a metadata snapshot is already held at block {_sb.HeldRoot}");
        Commit();
        var copy = _tm.New(BlockKind.ThinSuperblock);
        _sb.Raw.AsSpan(4).CopyTo(copy.Data.AsSpan(4));
        var snap = new ThinSuperblock(copy.Data);
        snap.ClearSpaceMapRoots();
        snap.HeldRoot = 0;
        _tm.Inc(_sb.DataMappingRoot);
        _tm.Inc(_sb.DeviceDetailsRoot);
        _sb.HeldRoot = copy.Location;
        _dirty = true;
        Commit();
        return _sb.HeldRoot;
    }

    /// <summary>release_metadata_snap: drops the snapshot's trees (what is unshared is freed) and its block.</summary>
    public void ReleaseMetadataSnapshot()
    {
        RequireWritable();
        try
        {
            ulong held = _sb.HeldRoot;
            if (held == 0)
                throw new InvalidOperationException("no metadata snapshot is held");
            var snap = ReadSnapshotSuperblock(held);
            _top.Delete(snap.DataMappingRoot);
            _details.Delete(snap.DeviceDetailsRoot);
            _tm.Dec(held);
            _sb.HeldRoot = 0;
            _dirty = true;
            Commit();
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    public ThinSuperblock ReadSnapshotSuperblock(ulong block)
    {
        var raw = new byte[BlockChecksum.BlockSize];
        _bm.ReadRaw(block, raw);
        return ValidateSuperblock(raw, block);
    }

    // ---------------------------------------------------------------- commit

    /// <summary>
    /// Commits the transaction: <paramref name="flushData"/> (the data device's fsync) first, then
    /// every metadata block, fsync, then the superblock, fsync. After a crash the metadata opens at
    /// either the previous or this transaction, never in between.
    /// </summary>
    public void Commit(Action? flushData = null)
    {
        RequireWritable();
        try
        {
            flushData?.Invoke();
            WriteChangedDetails();
            _sb.DataSpaceMapRoot = _dsm.Commit();
            _sb.MetadataSpaceMapRoot = _msm.Commit();
            _bm.FlushDirty();
            _bm.WriteSuperblock(0, _sb.Raw, BlockKind.ThinSuperblock);
            _msm.OnCommitted();
            _dsm.OnCommitted();
            _tm.EndTransaction();
            _topPathShadowed.Clear();
            _dirty = false;
        }
        catch (Exception e) when (Poison(e))
        {
            throw; // not reached: Poison only records the failure
        }
    }

    /// <summary>Throws away the uncommitted transaction and reloads the last committed state.</summary>
    public void Abort()
    {
        _failure = null;
        _topPathShadowed.Clear();
        _tm.Abort();
        LoadCommitted();
    }

    private void WriteChangedDetails()
    {
        if (_changedDetails.Count == 0)
            return;
        Span<byte> v = stackalloc byte[DeviceDetails.Size];
        ulong root = _sb.DeviceDetailsRoot;
        foreach (var (dev, d) in _changedDetails.OrderBy(kv => kv.Key))
        {
            d.Write(v);
            _details.Insert(ref root, dev, v);
        }
        _sb.DeviceDetailsRoot = root;
        _changedDetails.Clear();
    }

    private void RequireWritable()
    {
        if (!_bm.Writable)
            throw new InvalidOperationException($"metadata {_bm.Path} is open read-only");
        if (_failure is not null)
            throw new InvalidOperationException($"the metadata transaction failed ({_failure}); abort it before further changes");
    }

    /// <summary>
    /// Exception filter of every change: if it failed part way (metadata space exhausted inside a
    /// split, a corrupt block), the in-memory transaction is no longer consistent, so further changes
    /// and commits are refused until <see cref="Abort"/> reloads the last committed state. Argument
    /// and not-found errors are raised before anything changes and do not count. Returns false, so
    /// the exception propagates untouched (and no closure is allocated on the hot path).
    /// </summary>
    private bool Poison(Exception e)
    {
        if (e is not (ArgumentException or KeyNotFoundException))
            _failure = e.Message;
        return false;
    }

    /// <summary>Set when a change failed part way; cleared by <see cref="Abort"/>.</summary>
    public bool TransactionFailed => _failure is not null;

    private void Trim() => _bm.Trim();

    public void Dispose() => _bm.Dispose();
}
