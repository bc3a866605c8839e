using System.Runtime.ExceptionServices;
using BackupAppliance.Core;
using BackupAppliance.PersistentData;
using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.Thin.Pool;

/// <summary>
/// A userspace dm-thin pool in a folder: <c>metadata</c> (kernel-format thin metadata), <c>data</c>
/// (a sparse file of data blocks), <c>catalogue.json</c> (volume names) and <c>pool.json</c>.
/// I/O follows dm-thin: provision on first write (zero-fill or copy from the external origin),
/// break sharing with a snapshot by copying, discard unmaps whole blocks and punches the data file
/// once no device references a block. Durability follows dm-thin too: every commit flushes the data
/// file before the metadata; a commit runs at least once a second while dirty and on every flush or
/// FUA write. One lock serialises metadata and data access, except that a write filling new blocks
/// (a first write, or one breaking sharing) copies their data with the lock released, its virtual
/// blocks held meanwhile (<see cref="BlockPrison"/>, dm-thin's bio prison). Reads may also lend
/// their bytes in the data file instead of copying them (<see cref="LendAsync"/>).
/// </summary>
public sealed partial class ThinPool : IAsyncDisposable, IDisposable
{
    public const string MetadataFile = "metadata";
    public const string DataFile = "data";

    public const string LockFile = "lock";

    /// <summary>New blocks are put together, and written past the page cache, in pieces of up to this size.</summary>
    private const int FillBufferSize = 1 << 20;

    /// <summary>
    /// New blocks written through the page cache go in pieces of this size. A larger write makes
    /// the kernel take large folios for the new pages, and on a VM that hands free memory back to
    /// its host (free page reporting) those come from returned memory and fill several times slower
    /// (measured: 1 MiB writes into new file space 0.5–1.5 GB/s, 64 KiB writes 2.5–7 GB/s).
    /// </summary>
    private const int PagedFillPiece = 64 * 1024;

    /// <summary>
    /// How far ahead of a fresh allocation the data file is preallocated (measured: 4 KiB writes
    /// breaking sharing 25–40% faster over NBD; 64 KiB page-cache writes into new space 2.5 → 4.6–7 GB/s).
    /// </summary>
    private const long PreallocationWindowBytes = 32L << 20;

    private const int EInval = 22;

    /// <summary>Threads that fill new blocks, each often waiting on the disk (4, 8 and 16 measured alike).</summary>
    private const int CopierThreads = 8;

    private readonly string _dir;
    private readonly FileStream _folderLock;
    private readonly ThinMetadata _md;
    private readonly SafeFileHandle _data;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _committer;
    private readonly List<ulong> _punchAfterCommit = new();
    private readonly Dictionary<string, SafeFileHandle> _origins = new();
    private readonly BlockPrison _prison = new();
    private readonly DataCopier _copier = new(CopierThreads);
    // The data file opened for direct I/O (null where there is none), the aligned buffers new blocks
    // are put together in, and the data blocks preallocated ahead of allocation.
    private readonly SafeFileHandle? _direct;
    private readonly AlignedBufferPool _fillBuffers = new(FillBufferSize, keep: 16);
    private readonly PreallocationWindow _preallocated;
    private readonly Func<ulong, bool> _isFreeDataBlock;
    private int _directFailed;
    // Whether volumes may lend their bytes (see LendAsync): the data file punches holes, and no
    // transaction was aborted and no punch failed since the pool opened.
    private volatile bool _lending;
    private TaskCompletionSource _spaceAdded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private PoolSettings _settings;
    private VolumeCatalogue _catalogue;
    private bool _dirty;
    private bool _disposed;
    private string? _readOnlyReason;
    private bool _outOfData;
    private bool _belowLowWater;
    // Bumped when a transaction is aborted: blocks a write allocated before that no longer exist.
    private long _generation;
    // Set when new blocks are mapped; the periodic commit clears it before its data flush outside the
    // lock, and flushes again under the lock only if it was set meanwhile.
    private int _mappedSinceFlush;
    // Set when data is written in place; cleared with _mappedSinceFlush. If it was set meanwhile, a
    // commit that did not flush under the lock leaves the pool dirty: that data is not durable yet.
    private int _writtenSinceFlush;

    /// <summary>
    /// Raised (under the pool's lock: keep handlers short) when free data space drops below the
    /// low-water mark, once per crossing, like dm-thin's low-water event. The text says what to do.
    /// </summary>
    public event Action<string>? Warning;

    private ThinPool(string dir, FileStream folderLock, ThinMetadata md, SafeFileHandle data, PoolSettings settings, VolumeCatalogue catalogue, TimeProvider time, TimeSpan commitInterval)
    {
        _dir = dir;
        _folderLock = folderLock;
        _md = md;
        _data = data;
        _settings = settings;
        _catalogue = catalogue;
        _time = time;
        _direct = FileSync.OpenDirect(Path.Combine(dir, DataFile));
        _preallocated = new PreallocationWindow(data, settings.DataBlockSize, PreallocationWindowBytes);
        _isFreeDataBlock = block => _md.DataBlockRefCount(block) == 0;
        // A punch past the end changes nothing and tells whether the file system punches at all.
        _lending = FileSync.PunchHole(data, RandomAccess.GetLength(data), settings.DataBlockSize);
        if (md.NeedsCheck)
            _readOnlyReason = "the metadata needs a check (needs_check is set): run `bapp pool check`";
        _committer = commitInterval > TimeSpan.Zero ? Task.Run(() => CommitLoop(commitInterval)) : Task.CompletedTask;
    }

    public string Directory => _dir;
    public PoolSettings Settings => _settings;
    public int DataBlockSize => _settings.DataBlockSize;

    /// <summary>Creates a pool folder. Sizes in bytes; the metadata size defaults to what the data size needs.</summary>
    public static ThinPool Create(string dir, long dataSize, PoolSettings settings, long? metadataSize = null, TimeProvider? time = null, TimeSpan? commitInterval = null)
    {
        int bs = settings.DataBlockSize;
        if (bs < 64 * 1024 || bs > 1 << 30 || bs % (64 * 1024) != 0)
            throw new ArgumentException($"block size {bs} bytes is not a multiple of 64 KiB between 64 KiB and 1 GiB");
        if (dataSize < bs)
            throw new ArgumentException($"data size {dataSize} bytes is smaller than one block ({bs} bytes)");
        System.IO.Directory.CreateDirectory(dir);
        if (File.Exists(Path.Combine(dir, MetadataFile)) || File.Exists(Path.Combine(dir, VolumeCatalogue.FileName)))
            throw new ArgumentException($"{dir} already holds a pool");
        ulong nrData = (ulong)(dataSize / bs);
        long meta = metadataSize ?? DefaultMetadataSize(nrData);
        if (meta < 128 << 10)
            throw new ArgumentException($"metadata size {meta} bytes is too small (at least 128 KiB)");
        using (var f = new FileStream(Path.Combine(dir, DataFile), FileMode.CreateNew))
            f.SetLength((long)nrData * bs);
        using (var f = new FileStream(Path.Combine(dir, MetadataFile), FileMode.CreateNew))
            f.SetLength(meta / 4096 * 4096);
        ThinMetadata.Create(Path.Combine(dir, MetadataFile), (uint)(bs / 512), nrData).Dispose();
        VolumeCatalogue.SaveSettings(dir, settings);
        new VolumeCatalogue().Save(dir);
        return Open(dir, time, commitInterval);
    }

    /// <summary>Like thin_metadata_size: 64 bytes per data block, twice for snapshots, at least 8 MiB.</summary>
    public static long DefaultMetadataSize(ulong nrDataBlocks) =>
        Math.Clamp((long)nrDataBlocks * 128 + (4L << 20), 8L << 20, (long)MetadataSpaceMap.MaxBlocks * 4096);

    public static ThinPool Open(string dir, TimeProvider? time = null, TimeSpan? commitInterval = null)
    {
        if (!File.Exists(Path.Combine(dir, MetadataFile)))
            throw new FileNotFoundException($"{dir} is not a pool (no {MetadataFile} file)");
        var folderLock = LockFolder(dir);
        ThinMetadata? md = null;
        try
        {
            var settings = VolumeCatalogue.LoadSettings(dir);
            var catalogue = VolumeCatalogue.Load(dir);
            md = ThinMetadata.Open(Path.Combine(dir, MetadataFile));
            if (md.DataBlockSize * 512L != settings.DataBlockSize)
                throw new InvalidDataException($"metadata says data blocks are {md.DataBlockSize * 512L} bytes, {PoolSettings.FileName} says {settings.DataBlockSize}");
            var data = File.OpenHandle(Path.Combine(dir, DataFile), FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
            long need = (long)md.NrDataBlocks * settings.DataBlockSize;
            long have = RandomAccess.GetLength(data);
            if (have < need)
            {
                data.Dispose();
                throw new InvalidDataException($"data file holds {have} bytes, the metadata needs {need}");
            }
            var pool = new ThinPool(dir, folderLock, md, data, settings, catalogue, time ?? TimeProvider.System, commitInterval ?? TimeSpan.FromSeconds(1));
            try
            {
                pool.Locked(pool.ReclaimPendingDevices);
            }
            catch
            {
                pool.Dispose();
                throw;
            }
            return pool;
        }
        catch
        {
            md?.Dispose();
            folderLock.Dispose();
            throw;
        }
    }

    /// <summary>
    /// One process at a time: two writers of the same metadata would corrupt it. The lock is an
    /// exclusive lock on <c>DIR/lock</c>, released by the kernel if the process dies.
    /// </summary>
    internal static FileStream LockFolder(string dir)
    {
        try
        {
            return new FileStream(Path.Combine(dir, LockFile), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e)
        {
            throw new IOException($"pool {dir} is in use by another process (stop `bapp serve` or the agent first): {e.Message}", e);
        }
    }

    // ------------------------------------------------------------------ volumes

    public IReadOnlyList<VolumeEntry> Volumes
    {
        get => Locked(() => _catalogue.Volumes.ToList());
    }

    /// <summary>Mapped blocks of each volume (from the device details).</summary>
    public ulong MappedBlocks(VolumeEntry v) => Locked(() => _md.GetDetails(v.DeviceId).MappedBlocks);

    public ThinVolume CreateVolume(string name, long size, string? origin = null)
    {
        ValidateName(name);
        if (size <= 0)
            throw new ArgumentException($"volume size must be positive (got {size})");
        if (origin is not null)
        {
            origin = Path.GetFullPath(origin);
            if (!File.Exists(origin))
                throw new FileNotFoundException($"origin image {origin} does not exist");
            if (size < new FileInfo(origin).Length)
                throw new ArgumentException($"volume size {size} is smaller than its origin ({new FileInfo(origin).Length} bytes)");
        }
        return Locked(() =>
        {
            RequireWritable();
            if (_catalogue.Find(name) is not null)
                throw new ArgumentException($"a volume named '{name}' already exists");
            ulong id = BeginCreate();
            Guard(() => _md.CreateThin(id));
            CommitLocked();
            return EndCreate(new VolumeEntry { Name = name, DeviceId = id, Size = size, Origin = origin, Created = _time.GetUtcNow() });
        });
    }

    /// <summary>An O(1) snapshot (shares every block); exported read-only.</summary>
    public ThinVolume Snapshot(string name, string snapshotName) => Snapshot(name, snapshotName, changeEpoch: null);

    /// <summary>
    /// A snapshot that records <paramref name="changeEpoch"/>: the change tracker's epoch (a dm-era
    /// era) that began when the snapshot was taken, so changes since it can be found by epoch.
    /// </summary>
    public ThinVolume Snapshot(string name, string snapshotName, ulong? changeEpoch) =>
        CreateSnapshot(name, snapshotName, changeEpoch, readOnly: true);

    /// <summary>
    /// A writable snapshot: shares every block of <paramref name="name"/> until written (dm-thin's
    /// snapshots are writable; the pool exports ordinary ones read-only). A backup receiver stages
    /// the next point in one, then publishes it with <see cref="RenameVolume"/>.
    /// </summary>
    public ThinVolume WritableSnapshot(string name, string snapshotName) =>
        CreateSnapshot(name, snapshotName, changeEpoch: null, readOnly: false);

    private ThinVolume CreateSnapshot(string name, string snapshotName, ulong? changeEpoch, bool readOnly)
    {
        ValidateName(snapshotName);
        return Locked(() =>
        {
            RequireWritable();
            var origin = _catalogue.Find(name) ?? throw new KeyNotFoundException($"no volume named '{name}'");
            if (_catalogue.Find(snapshotName) is not null)
                throw new ArgumentException($"a volume named '{snapshotName}' already exists");
            ulong id = BeginCreate();
            Guard(() => _md.CreateSnapshot(id, origin.DeviceId));
            CommitLocked();
            return EndCreate(new VolumeEntry
            {
                Name = snapshotName, DeviceId = id, Size = origin.Size, ReadOnly = readOnly, SnapshotOf = name,
                Origin = origin.Origin, Created = _time.GetUtcNow(), ChangeEpoch = changeEpoch,
            });
        });
    }

    /// <summary>Deletes a volume; data blocks no other volume shares are freed and punched out of the data file.</summary>
    public void DeleteVolume(string name)
    {
        Locked(() =>
        {
            RequireWritable();
            var v = _catalogue.Find(name) ?? throw new KeyNotFoundException($"no volume named '{name}'");
            DeleteDeviceLocked(v.DeviceId);
            // Catalogue first, with the device pending: a crash after it leaves a device the next
            // open reclaims, never a name without a device.
            _catalogue.Volumes.Remove(v);
            _catalogue.Pending.Add(v.DeviceId);
            _catalogue.Save(_dir);
            CommitLocked();
            _catalogue.Pending.Remove(v.DeviceId); // on disk with the next catalogue write; harmless until then
        });
    }

    /// <summary>
    /// Thin devices an interrupted create or delete left behind (a crash between its metadata commit
    /// and its catalogue write), deleted when this pool was opened, with their unshared blocks freed.
    /// </summary>
    public IReadOnlyList<ulong> ReclaimedDevices { get; private set; } = [];

    /// <summary>What opening reclaimed, for the operator's log; null when nothing was.</summary>
    public string? ReclaimNote => ReclaimedDevices.Count == 0 ? null :
        $"pool {_dir}: reclaimed thin device{(ReclaimedDevices.Count == 1 ? "" : "s")} {string.Join(", ", ReclaimedDevices)}, left by a create or delete that a crash interrupted (their unshared blocks are free again)";

    /// <summary>Takes a device id and records it as pending on disk, before the metadata knows the device.</summary>
    private ulong BeginCreate()
    {
        ulong id = NextDeviceId();
        _catalogue.Pending.Add(id);
        _catalogue.NextDeviceId = id + 1;
        _catalogue.Save(_dir);
        return id;
    }

    /// <summary>Names the created device, and it stops being pending, in one catalogue write.</summary>
    private ThinVolume EndCreate(VolumeEntry entry)
    {
        _catalogue.Volumes.Add(entry);
        _catalogue.Pending.Remove(entry.DeviceId);
        _catalogue.Save(_dir);
        return new ThinVolume(this, entry);
    }

    /// <summary>Deletes a device from the metadata; the data blocks nobody else maps are punched after the commit.</summary>
    private void DeleteDeviceLocked(ulong device)
    {
        var blocks = new List<ulong>();
        _md.VisitMappings(device, leaf =>
        {
            for (int i = 0; i < leaf.NrEntries; i++)
                blocks.Add(BlockTime.Unpack(leaf.Value64(i)).DataBlock);
        });
        Guard(() => _md.DeleteDevice(device));
        foreach (ulong b in blocks)
            if (_md.DataBlockRefCount(b) == 0)
                _punchAfterCommit.Add(b);
    }

    /// <summary>
    /// At open: deletes the pending devices the catalogue does not name (an interrupted create or
    /// delete), then forgets every pending id. A pool that needs a check is left alone.
    /// </summary>
    private void ReclaimPendingDevices()
    {
        if (_catalogue.Pending.Count == 0 || _readOnlyReason is not null)
            return;
        var reclaimed = new List<ulong>();
        foreach (ulong id in _catalogue.Pending)
        {
            if (_catalogue.Volumes.Exists(v => v.DeviceId == id) || !_md.DeviceExists(id))
                continue;
            DeleteDeviceLocked(id);
            reclaimed.Add(id);
        }
        if (reclaimed.Count > 0)
            CommitLocked();
        _catalogue.Pending.Clear();
        _catalogue.Save(_dir);
        ReclaimedDevices = reclaimed;
    }

    /// <summary>
    /// Renames a volume and sets whether it is read-only, in one atomic catalogue write: after a
    /// crash the catalogue has the old name or the new one, never both or neither. Snapshots that
    /// name it as their origin follow the new name. Open handles of the volume keep working under the
    /// new flags (a volume made read-only refuses their writes).
    /// </summary>
    public ThinVolume RenameVolume(string name, string newName, bool readOnly)
    {
        ValidateName(newName);
        return Locked(() =>
        {
            RequireWritable();
            var v = _catalogue.Find(name) ?? throw new KeyNotFoundException($"no volume named '{name}'");
            if (name != newName && _catalogue.Find(newName) is not null)
                throw new ArgumentException($"cannot rename '{name}' to '{newName}': a volume named '{newName}' already exists");
            var renamed = v with { Name = newName, ReadOnly = readOnly };
            var next = new VolumeCatalogue
            {
                Volumes = _catalogue.Volumes.Select(e => ReferenceEquals(e, v) ? renamed : e.SnapshotOf == name ? e with { SnapshotOf = newName } : e).ToList(),
                NextDeviceId = _catalogue.NextDeviceId,
                Pending = [.. _catalogue.Pending],
            };
            // The in-memory catalogue changes only once the new one is on disk.
            next.Save(_dir);
            _catalogue = next;
            return new ThinVolume(this, renamed);
        });
    }

    public ThinVolume OpenVolume(string name)
    {
        var v = Locked(() => _catalogue.Find(name)) ?? throw new KeyNotFoundException($"no volume named '{name}'");
        return new ThinVolume(this, v);
    }

    private ulong NextDeviceId()
    {
        ulong id = _catalogue.NextDeviceId;
        while (_md.DeviceExists(id))
            id++;
        return id;
    }

    private static void ValidateName(string name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 200 || name.Any(c => char.IsControl(c) || c == '/' || c == '@'))
            throw new ArgumentException($"'{name}' is not a valid volume name (1-200 characters, no '/', '@' or control characters)");
    }

    // ------------------------------------------------------------------ status, resize

    public PoolStatus Status()
    {
        return Locked(() =>
        {
            ulong used = _md.DataBlocksUsed, total = _md.NrDataBlocks;
            bool low = total > 0 && (total - used) * 100.0 / total < _settings.LowWaterPercent;
            return new PoolStatus(Mode, _md.NeedsCheck, _md.TransactionId, used, total,
                _md.MetadataBlocksUsed, _md.NrMetadataBlocks, _settings.DataBlockSize, low, _readOnlyReason, _catalogue.Volumes.Count);
        });
    }

    public PoolMode Mode => _readOnlyReason is not null ? PoolMode.ReadOnly : _outOfData ? PoolMode.OutOfDataSpace : PoolMode.Write;

    /// <summary>Grows the data and/or metadata device. Returns a pool that ran out of space to write mode.</summary>
    public void Resize(long? dataSize, long? metadataSize)
    {
        Locked(() =>
        {
            if (_md.NeedsCheck)
                throw new InvalidOperationException("the metadata needs a check first (needs_check is set): run `bapp pool check`");
            if (_md.TransactionFailed)
                _md.Abort();
            if (metadataSize is { } ms)
                Guard(() => _md.ResizeMetadata((ulong)(ms / 4096)));
            if (dataSize is { } ds)
            {
                ulong nr = (ulong)(ds / _settings.DataBlockSize);
                if (nr < _md.NrDataBlocks)
                    throw new ArgumentException($"the data device cannot shrink ({_md.NrDataBlocks} blocks now, {nr} asked)");
                RandomAccess.SetLength(_data, (long)nr * _settings.DataBlockSize);
                Guard(() => _md.ResizeData(nr));
            }
            // Space was the reason for read-only mode (metadata exhausted): back to write mode.
            if (_readOnlyReason is not null && !_md.NeedsCheck)
                _readOnlyReason = null;
            _outOfData = false;
            CheckLowWater();
            var waiting = _spaceAdded;
            _spaceAdded = new(TaskCreationOptions.RunContinuationsAsynchronously);
            waiting.TrySetResult();
        });
    }

    // ------------------------------------------------------------------ I/O (called by ThinVolume)

    /// <summary>
    /// Reads a volume. A <paramref name="streaming"/> read (data read once: a backup's pass) whose
    /// offset, length and memory are aligned reads mapped blocks past the page cache (direct I/O):
    /// through it, every block read takes new page-cache memory (measured on the development VM,
    /// 1.5 GiB read cold: 2.8 s of system time buffered, 0.13 s direct).
    /// </summary>
    internal ValueTask ReadAsync(VolumeEntry v, long offset, Memory<byte> buffer, bool streaming, CancellationToken ct) =>
        ReadRangesAsync(v, offset, null, buffer, streaming, ct);

    /// <summary>
    /// Reads several ranges into <paramref name="buffer"/>, one after the other, under one hold of
    /// the lock; mapped pieces that lie side by side both in the data file and in the buffer are
    /// read with one call (scattered changed blocks a write allocated in order).
    /// </summary>
    internal ValueTask ReadAsync(VolumeEntry v, IReadOnlyList<VolumeRange> ranges, Memory<byte> buffer, bool streaming, CancellationToken ct) =>
        ReadRangesAsync(v, 0, ranges, buffer, streaming, ct);

    /// <summary>The read of <paramref name="ranges"/>, or when it is null of <paramref name="buffer"/>'s length at <paramref name="offset"/>.</summary>
    private async ValueTask ReadRangesAsync(VolumeEntry v, long offset, IReadOnlyList<VolumeRange>? ranges, Memory<byte> buffer, bool streaming, CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            ThrowIfDisposed();
            var run = new DataRead(streaming);
            if (ranges is null)
                ReadLocked(v, offset, buffer, 0, buffer.Length, ref run);
            else
            {
                int at = 0;
                foreach (var r in ranges)
                {
                    ReadLocked(v, r.Offset, buffer, at, r.Length, ref run);
                    at += r.Length;
                }
            }
            Finish(ref run, buffer);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// Lends a range's bytes to <paramref name="sink"/> under the lock (see
    /// <see cref="IBlockVolume.TryLendAsync"/>): runs of mapped blocks side by side in the data file
    /// as one piece of it, holes as zeroes. While the lock is held no mapping changes and no block
    /// is punched or reused (a freed block is punched by the next commit and reused only after it);
    /// what the sink took by reference is then safe from a block's reuse too, because every freed
    /// block is punched before it can be reused, which drops its cached pages instead of rewriting
    /// them. Hence no lending where the data file cannot punch, after a punch failed, or after an
    /// aborted transaction (its blocks are freed without a punch); nor for a volume with an external
    /// origin (its holes read another file).
    /// </summary>
    internal async ValueTask<bool> LendAsync(VolumeEntry v, long offset, int length, IVolumeLendSink sink, CancellationToken ct)
    {
        if (v.Origin is not null || !_lending)
            return false;
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            ThrowIfDisposed();
            if (!_lending)
                return false;
            long fileAt = 0;
            int fileLength = 0, zeroes = 0;
            for (int done = 0, n; done < length; done += n)
            {
                n = NextReadPiece(v, offset + done, length - done, out long at);
                if (at >= 0)
                {
                    if (zeroes > 0)
                        sink.TakeZeroes(zeroes);
                    zeroes = 0;
                    if (fileLength > 0 && fileAt + fileLength != at)
                    {
                        sink.TakeFile(_data, fileAt, fileLength);
                        fileLength = 0;
                    }
                    if (fileLength == 0)
                        fileAt = at;
                    fileLength += n;
                }
                else
                {
                    if (fileLength > 0)
                        sink.TakeFile(_data, fileAt, fileLength);
                    fileLength = 0;
                    zeroes += n;
                }
            }
            if (fileLength > 0)
                sink.TakeFile(_data, fileAt, fileLength);
            if (zeroes > 0)
                sink.TakeZeroes(zeroes);
            return true;
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// A read of consecutive data-file bytes into consecutive buffer bytes, grown while the next
    /// mapped piece continues it in both, and issued when one does not (or at the end).
    /// </summary>
    private struct DataRead(bool streaming)
    {
        public readonly bool Streaming = streaming;
        public long FileOffset;
        public int Start;
        public int Length;
    }

    /// <summary>Reads <paramref name="length"/> bytes at <paramref name="offset"/> of the volume into <paramref name="buffer"/> at <paramref name="start"/>; under the lock.</summary>
    private void ReadLocked(VolumeEntry v, long offset, Memory<byte> buffer, int start, int length, ref DataRead run)
    {
        for (int done = 0, n; done < length; done += n)
        {
            n = NextReadPiece(v, offset + done, length - done, out long at);
            if (at >= 0)
            {
                if (run.Length > 0 && (run.FileOffset + run.Length != at || run.Start + run.Length != start + done))
                    Finish(ref run, buffer);
                if (run.Length == 0)
                {
                    run.FileOffset = at;
                    run.Start = start + done;
                }
                run.Length += n;
            }
            else
                ReadUnprovisioned(v, offset + done, buffer.Span.Slice(start + done, n));
        }
    }

    /// <summary>
    /// The next piece of a read, under the lock: from <paramref name="pos"/>, at most
    /// <paramref name="left"/> bytes that continue in consecutive mapped data blocks
    /// (<paramref name="fileAt"/>: where they start in the data file), or the rest of one
    /// unprovisioned block (<paramref name="fileAt"/> -1). Returns the piece's length.
    /// </summary>
    private int NextReadPiece(VolumeEntry v, long pos, int left, out long fileAt)
    {
        int bs = _settings.DataBlockSize;
        long vblock = pos / bs;
        int inBlock = (int)(pos % bs);
        int n = Math.Min(left, bs - inBlock);
        if (Lookup(v.DeviceId, (ulong)vblock) is not { } map)
        {
            fileAt = -1;
            return n;
        }
        fileAt = (long)map.DataBlock * bs + inBlock;
        return n + ContiguousRun(v, vblock, map.DataBlock, left - n, shared: null);
    }

    /// <summary>Issues a gathered data read: past the page cache when it is a streaming one and aligned.</summary>
    private void Finish(ref DataRead run, Memory<byte> buffer)
    {
        if (run.Length == 0)
            return;
        var into = buffer.Span.Slice(run.Start, run.Length);
        if (!run.Streaming || !CanGoDirect(run.FileOffset, into) || !TryReadDirect(run.FileOffset, into))
            ReadZeroFilled(_data, into, run.FileOffset);
        run.Length = 0;
    }

    /// <summary>Why one pass of a write under the lock stopped.</summary>
    private enum WriteStop { Done, Held, Barrier, NoSpace, NotLanded }

    /// <summary>
    /// Writes to a volume. A <paramref name="streaming"/> write (data not read back soon: a replica
    /// being filled) writes the new blocks it covers whole past the page cache (direct I/O) where
    /// its memory is aligned: through it, each such block takes new page-cache memory and the kernel's
    /// writeback (measured on the development VM, 1.5 GiB written and synced: 4.7 s of system time
    /// buffered, 0.17 s direct). Durability is the same: the commit flushes the data file first.
    /// With <paramref name="mayLand"/> (see <see cref="IBlockVolume.WriteAfterAsync"/>), new blocks
    /// are allocated and filled before it completes and mapped after; nothing is written in place before.
    /// </summary>
    internal ValueTask WriteAsync(VolumeEntry v, long offset, ReadOnlyMemory<byte> data, bool fua, bool streaming, Task? mayLand, CancellationToken ct) =>
        WriteRangesAsync(v, offset, null, data, fua, streaming, mayLand, ct);

    /// <summary>
    /// A streaming write of several ranges, from <paramref name="data"/> one after the other: their
    /// new blocks join one batch, so blocks allocated side by side for ranges that are not are still
    /// filled with one call (a replica applying scattered changed blocks).
    /// </summary>
    internal ValueTask WriteAsync(VolumeEntry v, IReadOnlyList<VolumeRange> ranges, ReadOnlyMemory<byte> data, CancellationToken ct) =>
        WriteRangesAsync(v, 0, ranges, data, fua: false, streaming: true, mayLand: null, ct);

    /// <summary>The write of <paramref name="ranges"/>, or when it is null of <paramref name="data"/> at <paramref name="offset"/>.</summary>
    private async ValueTask WriteRangesAsync(VolumeEntry v, long offset, IReadOnlyList<VolumeRange>? ranges, ReadOnlyMemory<byte> data, bool fua, bool streaming, Task? mayLand, CancellationToken ct)
    {
        if (mayLand is { IsCompleted: true })
        {
            await mayLand.ConfigureAwait(false); // throws if it failed: nothing written
            mayLand = null;
        }
        int count = ranges?.Count ?? 1;
        int range = 0, rangeStart = 0; // the range being written, and where its bytes start in data
        int done = 0; // bytes of data written, or handed to a batch that has been mapped since
        while (true)
        {
            ProvisionBatch? batch = null;
            WriteStop stop = WriteStop.Done;
            Task? wait = null;
            await _lock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                ThrowIfDisposed();
                RequireWritableVolume(v);
                while (range < count)
                {
                    var r = ranges?[range] ?? new VolumeRange(offset, data.Length);
                    int rangeEnd = rangeStart + r.Length;
                    // WritePass counts done in data: the range's bytes are data[rangeStart..rangeEnd).
                    (stop, wait) = WritePass(v, r.Offset - rangeStart, data.Span[..rangeEnd], streaming, inPlace: mayLand is null, ref done, ref batch);
                    if (stop != WriteStop.Done)
                        break;
                    range++;
                    rangeStart = rangeEnd;
                }
                if (stop == WriteStop.NoSpace)
                    wait = _spaceAdded.Task;
            }
            catch when (batch is not null)
            {
                AbandonLocked(batch);
                throw;
            }
            finally
            {
                _lock.Release();
            }
            // A write never waits while it holds blocks: it fills and maps its batch first.
            if (batch is not null)
            {
                await ProvisionAsync(batch, data, mayLand).ConfigureAwait(false);
                mayLand = null; // mapped: it has landed
            }
            switch (stop)
            {
                case WriteStop.Done:
                    if (fua)
                        await CommitAsync(ct).ConfigureAwait(false);
                    return;
                case WriteStop.NoSpace when _settings.ErrorIfNoSpace:
                    throw OutOfDataSpace();
                case WriteStop.NoSpace:
                    await WaitForSpace(wait!, ct).ConfigureAwait(false);
                    break;
                case WriteStop.NotLanded:
                    if (mayLand is not null)
                        await mayLand.ConfigureAwait(false);
                    mayLand = null;
                    break;
                default:
                    await wait!.WaitAsync(ct).ConfigureAwait(false);
                    break;
            }
        }
    }

    /// <summary>
    /// One pass of a write under the lock, from <paramref name="done"/> on, block by block: an
    /// unshared mapped block is written in place; a block that needs a new one (unmapped, or shared
    /// with a snapshot) gets it allocated and added to <paramref name="batch"/>, to be filled once
    /// the lock is released. Stops at the end, at a block another write holds, at a commit's barrier
    /// (before starting a batch), when data space runs out, or at a block to overwrite in place
    /// when <paramref name="inPlace"/> is false (the write may not land yet); what was done stays done.
    /// </summary>
    private (WriteStop, Task?) WritePass(VolumeEntry v, long offset, ReadOnlySpan<byte> src, bool streaming, bool inPlace, ref int done, ref ProvisionBatch? batch)
    {
        int bs = _settings.DataBlockSize;
        while (done < src.Length)
        {
            long pos = offset + done;
            long vblock = pos / bs;
            int inBlock = (int)(pos % bs);
            int n = Math.Min(src.Length - done, bs - inBlock);
            var m = Lookup(v.DeviceId, (ulong)vblock);
            if (m is { Shared: false } map)
            {
                if (!inPlace)
                    return (WriteStop.NotLanded, null);
                n += ContiguousRun(v, vblock, map.DataBlock, src.Length - done - n, shared: false);
                WriteData(map.DataBlock, inBlock, src.Slice(done, n));
                _dirty = true;
                Volatile.Write(ref _writtenSinceFlush, 1);
            }
            else
            {
                if (_prison.HeldBy(v.DeviceId, (ulong)vblock) is { } held)
                    return (WriteStop.Held, held);
                if (batch is null && _prison.Barrier is { } barrier)
                    return (WriteStop.Barrier, barrier);
                if (!TryAllocate(out ulong fresh))
                    return (WriteStop.NoSpace, null);
                _preallocated.Cover(fresh, _md.NrDataBlocks);
                if (batch is null)
                {
                    batch = new ProvisionBatch(v.DeviceId, _generation, streaming);
                    _prison.Start(batch);
                }
                batch.Blocks.Add(new NewBlock((ulong)vblock, fresh, inBlock, n, done, m?.DataBlock, m is null ? OriginHandle(v) : null));
                _prison.Hold(batch, (ulong)vblock);
            }
            done += n;
        }
        return (WriteStop.Done, null);
    }

    /// <summary>
    /// Fills a batch's new blocks with the lock released, on a copier thread (so that a caller's
    /// request loop goes on meanwhile; a streaming write fills them itself), then maps them under
    /// the lock, once <paramref name="mayLand"/> (if any) has completed; if it fails, the batch is
    /// given back and the write fails with its exception. Not cancellable: its blocks are held
    /// until it ends.
    /// </summary>
    private async ValueTask ProvisionAsync(ProvisionBatch batch, ReadOnlyMemory<byte> data, Task? mayLand)
    {
        Exception? failure = null;
        try
        {
            if (batch.Streaming)
                FillNewBlocks(batch, data.Span); // one writer with nothing else to do meanwhile: no hop to a copier thread and back
            else
                await _copier.Run(() => FillNewBlocks(batch, data.Span)).ConfigureAwait(false);
            if (mayLand is not null)
                await mayLand.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            failure = e; // whatever it is, the batch must end below, or its blocks stay held
        }
        await _lock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            if (failure is not null)
            {
                AbandonLocked(batch);
                if (failure is IOException io)
                    throw new VolumeException(VolumeError.IoError, $"filling new blocks in the data file of pool {_dir} failed: {io.Message}", io);
                ExceptionDispatchInfo.Throw(failure);
            }
            MapLocked(batch);
        }
        finally
        {
            _lock.Release();
        }
    }

    /// <summary>
    /// The new blocks' data: the write's part, and the rest from the shared block, the origin or
    /// zeroes. A copy that breaks sharing is written past the page cache (direct I/O) where the file
    /// system allows: through the page cache it would take new page-cache memory for every block,
    /// which dominates unless that memory is already free and touched (measured over NBD, 1 MiB
    /// writes breaking sharing: 0.9–1.2 GB/s through the page cache, 1.9–2.0 GB/s direct, with the
    /// page cache full and reclaiming; on a VM whose untouched memory faults to its host, 0.3–0.6
    /// against 2 GB/s). The shared block it came from stays cached for the snapshot; the copy's
    /// reader is the client, which caches above us. Where freed page-cache memory is reused at once
    /// the page cache is faster (see PoolWriteBenchmarks). First writes go through the page cache,
    /// in pieces of <see cref="PagedFillPiece"/>.
    /// </summary>
    private void FillNewBlocks(ProvisionBatch batch, ReadOnlySpan<byte> data)
    {
        var blocks = batch.Blocks;
        AlignedBuffer? rented = null; // only for a copy or a block the write covers in part
        try
        {
            for (int i = 0; i < blocks.Count;)
                i += FillRun(blocks, i, data, batch.Streaming, ref rented);
        }
        finally
        {
            rented?.Dispose();
        }
    }

    /// <summary>
    /// Fills the new block at <paramref name="i"/>, with the whole blocks after it whose bytes follow
    /// its own in the write and which landed in the data blocks after its own (they go out together,
    /// with one call); returns how many it filled. A batch skips the blocks its write overwrote in
    /// place, so consecutive data blocks alone do not make a run; the virtual blocks need not be
    /// consecutive (a write of several ranges).
    /// </summary>
    private int FillRun(List<NewBlock> blocks, int i, ReadOnlySpan<byte> data, bool streaming, ref AlignedBuffer? rented)
    {
        int bs = _settings.DataBlockSize;
        var b = blocks[i];
        bool copy = b.SharedBlock is not null;
        int run = 1;
        if (b.Length == bs)
            while (i + run < blocks.Count && blocks[i + run] is { } next && next.Length == bs
                && next.DataOffset == b.DataOffset + run * bs && next.DataBlock == b.DataBlock + (ulong)run
                && (next.SharedBlock is not null) == copy)
                run++;
        bool direct = (copy || streaming) && DirectIoUsable;
        int pieceSize = direct ? FillBufferSize : PagedFillPiece;
        long total = (long)run * bs;
        for (long chunk = 0; chunk < total; chunk += pieceSize)
        {
            int length = (int)Math.Min(pieceSize, total - chunk);
            long at = (long)b.DataBlock * bs + chunk;
            if (b.Length == bs)
            {
                // The write covers the blocks: its own memory goes out, directly if it is aligned.
                var whole = data.Slice(b.DataOffset + (int)chunk, length);
                if (!direct)
                {
                    WriteDataAt(at, whole);
                    continue;
                }
                if (CanGoDirect(at, whole))
                {
                    if (!TryWriteDirect(at, whole))
                        WriteDataAt(at, whole);
                    continue;
                }
            }
            rented ??= _fillBuffers.Rent();
            var piece = rented.Value.Span[..length];
            if (b.Length == bs)
                data.Slice(b.DataOffset + (int)chunk, length).CopyTo(piece);
            else
                ComposePartial(b, (int)chunk, piece, data);
            if (!direct || !TryWriteDirect(at, piece))
                WriteDataAt(at, piece);
        }
        return run;
    }

    /// <summary>Bytes [<paramref name="from"/>, +piece) of a block a write covers only in part: the old contents, then the write's bytes over them.</summary>
    private void ComposePartial(NewBlock b, int from, Span<byte> piece, ReadOnlySpan<byte> data)
    {
        int lo = Math.Max(from, b.InBlock), hi = Math.Min(from + piece.Length, b.InBlock + b.Length);
        if (lo > from || hi < from + piece.Length)
        {
            if (b.SharedBlock is { } shared)
                ReadShared(shared, from, piece);
            else if (b.Origin is { } origin)
                ReadOrigin(origin, (long)b.VBlock * _settings.DataBlockSize + from, piece);
            else
                piece.Clear();
        }
        if (lo < hi)
            data.Slice(b.DataOffset + (lo - b.InBlock), hi - lo).CopyTo(piece[(lo - from)..]);
    }

    /// <summary>
    /// Bytes of a shared block, for its copy: past the page cache when none of them is cached (a
    /// block written by an earlier copy, or evicted). Through the page cache the read takes new
    /// page-cache memory for the block and reads ahead into the blocks around it, which a copy
    /// never needs (measured over NBD, 4 KiB writes breaking sharing of uncached blocks: the
    /// buffered read was a fifth of the server's CPU, half of it readahead). A cached block is
    /// read from the page cache. A shared block is never written in place, so both see the same bytes.
    /// </summary>
    private void ReadShared(ulong shared, int from, Span<byte> piece)
    {
        long at = (long)shared * _settings.DataBlockSize + from;
        if (!CanGoDirect(at, piece) || FileSync.CachedPages(_data, at, piece.Length) != 0 || !TryReadDirect(at, piece))
            ReadData(shared, from, piece);
    }

    /// <summary>Whether the data file is open for direct I/O and the file system has not refused it.</summary>
    private bool DirectIoUsable => _direct is not null && Volatile.Read(ref _directFailed) == 0;

    /// <summary>Whether a request at <paramref name="offset"/> over <paramref name="memory"/> can go past the page cache.</summary>
    private bool CanGoDirect(long offset, ReadOnlySpan<byte> memory) =>
        DirectIoUsable && offset % AlignedBufferPool.Alignment == 0
        && memory.Length % AlignedBufferPool.Alignment == 0 && AlignedBufferPool.IsAligned(memory);

    /// <summary>Reads aligned data straight from the data file; false when the file system refuses direct I/O here (then never again).</summary>
    private bool TryReadDirect(long at, Span<byte> aligned)
    {
        try
        {
            ReadZeroFilled(_direct!, aligned, at);
            return true;
        }
        catch (IOException e) when (e.HResult == EInval)
        {
            Volatile.Write(ref _directFailed, 1);
            return false;
        }
        catch (IOException e)
        {
            throw new VolumeException(VolumeError.IoError, $"reading the data file of pool {_dir} failed: {e.Message}", e);
        }
    }

    /// <summary>Writes aligned data straight to the data file; false when the file system refuses direct I/O here (then never again).</summary>
    private bool TryWriteDirect(long at, ReadOnlySpan<byte> aligned)
    {
        try
        {
            RandomAccess.Write(_direct!, aligned, at);
            return true;
        }
        catch (IOException e) when (e.HResult == EInval)
        {
            // The file system wants another alignment: the page cache from now on.
            Volatile.Write(ref _directFailed, 1);
            return false;
        }
        catch (IOException e)
        {
            throw DataWriteFailed(e);
        }
    }

    /// <summary>Maps a filled batch and lets go of its blocks; under the lock.</summary>
    private void MapLocked(ProvisionBatch batch)
    {
        try
        {
            if (batch.Generation != _generation)
                throw new VolumeException(VolumeError.IoError, $"pool {_dir}: the transaction was aborted while a write filled new blocks: {_readOnlyReason}");
            foreach (var b in batch.Blocks)
            {
                Guard(() => _md.Insert(batch.DeviceId, b.VBlock, b.DataBlock));
                // The block whose sharing was broken, if the insert dropped its last reference (its
                // snapshot was deleted during the copy), is freed like a discarded one.
                if (b.SharedBlock is { } shared && _md.DataBlockRefCount(shared) == 0)
                    _punchAfterCommit.Add(shared);
            }
            _dirty = true;
            Volatile.Write(ref _mappedSinceFlush, 1);
        }
        finally
        {
            _prison.Finish(batch);
        }
    }

    /// <summary>Gives a batch's blocks back (a failed copy, a failed pass) and lets go of them; under the lock.</summary>
    private void AbandonLocked(ProvisionBatch batch)
    {
        try
        {
            if (batch.Generation == _generation && _md.TransactionFailed is false)
                foreach (var b in batch.Blocks)
                    Guard(() => _md.DecDataBlock(b.DataBlock));
        }
        finally
        {
            _prison.Finish(batch);
        }
    }

    internal async ValueTask DiscardAsync(VolumeEntry v, long offset, long length, bool fua, CancellationToken ct)
    {
        int bs = _settings.DataBlockSize;
        long first = (offset + bs - 1) / bs, end = (offset + length) / bs;
        // dm-thin discards whole blocks only; a tail block of the volume counts as whole when the range reaches the end.
        if (offset + length == v.Size && v.Size % bs != 0)
            end = (v.Size + bs - 1) / bs;
        while (true)
        {
            Task? held;
            await _lock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                ThrowIfDisposed();
                RequireWritableVolume(v);
                // Blocks a write is filling are discarded once it has mapped them.
                held = first < end ? _prison.HeldIn(v.DeviceId, (ulong)first, (ulong)end) : null;
                if (held is null)
                {
                    UnmapBlocks(v, first, end);
                    _dirty = true;
                }
            }
            finally
            {
                _lock.Release();
            }
            if (held is null)
                break;
            await held.WaitAsync(ct).ConfigureAwait(false);
        }
        if (fua)
            await CommitAsync(ct).ConfigureAwait(false);
    }

    internal async ValueTask WriteZeroesAsync(VolumeEntry v, long offset, long length, bool noHole, bool fua, CancellationToken ct)
    {
        int bs = _settings.DataBlockSize;
        long pos = offset, end = offset + length;
        var zeroes = new byte[Math.Min(bs, (int)Math.Min(length, bs))];
        while (pos < end)
        {
            long vblock = pos / bs;
            int inBlock = (int)(pos % bs);
            long n = Math.Min(end - pos, bs - inBlock);
            bool whole = n == bs || (pos + n == v.Size && inBlock == 0);
            if (whole && !noHole && v.Origin is null)
                await DiscardAsync(v, pos, n, fua: false, ct).ConfigureAwait(false);
            else if (noHole || v.Origin is not null || await IsMappedAsync(v, vblock, ct).ConfigureAwait(false))
                await WriteAsync(v, pos, zeroes.AsMemory(0, (int)n), fua: false, streaming: false, mayLand: null, ct).ConfigureAwait(false);
            // else: an unprovisioned block without an origin already reads as zeroes.
            pos += n;
        }
        if (fua)
            await FlushAsync(ct).ConfigureAwait(false);
    }

    private async ValueTask<bool> IsMappedAsync(VolumeEntry v, long vblock, CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try { return Lookup(v.DeviceId, (ulong)vblock) is not null; }
        finally { _lock.Release(); }
    }

    internal ValueTask FlushAsync(CancellationToken ct) => CommitAsync(ct);

    /// <summary>Commits what is dirty, once no write is between allocating and mapping new blocks.</summary>
    private async ValueTask CommitAsync(CancellationToken ct)
    {
        bool barrier = await EnterQuiescedAsync(ct).ConfigureAwait(false);
        try
        {
            ThrowIfDisposed();
            if (_dirty && _readOnlyReason is null)
                CommitLocked();
        }
        finally
        {
            ExitQuiesced(barrier);
        }
    }

    /// <summary>
    /// Takes the lock with no batch in flight, so that a commit (or a metadata change that commits)
    /// records only whole writes. If batches are in flight, new ones are barred until
    /// <see cref="ExitQuiesced"/>, and this waits for those in flight; true then.
    /// </summary>
    private async ValueTask<bool> EnterQuiescedAsync(CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        var drained = _prison.RaiseBarrier();
        if (drained is null)
            return false;
        _lock.Release();
        // Not cancellable: batches end by themselves, and the barrier must be lowered by the caller.
        await drained.ConfigureAwait(false);
        await _lock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        return true;
    }

    private bool EnterQuiesced()
    {
        _lock.Wait();
        var drained = _prison.RaiseBarrier();
        if (drained is null)
            return false;
        _lock.Release();
        drained.GetAwaiter().GetResult();
        _lock.Wait();
        return true;
    }

    private void ExitQuiesced(bool barrier)
    {
        if (barrier)
            _prison.LowerBarrier();
        _lock.Release();
    }

    internal async ValueTask<IReadOnlyList<VolumeExtent>> GetAllocationAsync(VolumeEntry v, long offset, long length, CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            ThrowIfDisposed();
            var list = new VolumeExtentList();
            if (length == 0)
                return list.Items;
            if (v.Origin is not null)
            {
                list.Add(offset, length, hole: false); // unprovisioned blocks read the origin
                return list.Items;
            }
            int bs = _settings.DataBlockSize;
            long end = offset + length;
            long pos = offset;
            Guard(() =>
            {
                _md.VisitMappingRange(v.DeviceId, (ulong)(offset / bs), (ulong)((end + bs - 1) / bs), (vb, _) =>
                {
                    long start = Math.Max(offset, (long)vb * bs), stop = Math.Min(end, ((long)vb + 1) * bs);
                    list.Add(pos, start - pos, hole: true);
                    list.Add(start, stop - start, hole: false);
                    pos = stop;
                    return true;
                });
            });
            list.Add(pos, end - pos, hole: true);
            return list.Items;
        }
        finally
        {
            _lock.Release();
        }
    }

    // ------------------------------------------------------------------ internals

    private void UnmapBlocks(VolumeEntry v, long first, long end)
    {
        if (first >= end)
            return;
        var mapped = new List<ulong>();
        Guard(() => _md.VisitMappingRange(v.DeviceId, (ulong)first, (ulong)end, (vb, _) => { mapped.Add(vb); return true; }));
        foreach (ulong vb in mapped)
        {
            var m = Lookup(v.DeviceId, vb);
            Guard(() => _md.Remove(v.DeviceId, vb));
            if (m is { } map && _md.DataBlockRefCount(map.DataBlock) == 0)
                _punchAfterCommit.Add(map.DataBlock);
        }
    }

    /// <summary>
    /// Bytes beyond the first block that continue in consecutive data blocks (and, for
    /// <paramref name="shared"/> = false, are not shared), up to <paramref name="max"/>: one
    /// pread/pwrite then covers the run instead of one call per block.
    /// </summary>
    private int ContiguousRun(VolumeEntry v, long vblock, ulong dataBlock, int max, bool? shared)
    {
        int bs = _settings.DataBlockSize, extra = 0;
        for (long k = 1; extra < max; k++)
        {
            var next = Lookup(v.DeviceId, (ulong)(vblock + k));
            if (next is not { } n || n.DataBlock != dataBlock + (ulong)k || (shared == false && n.Shared))
                break;
            extra += Math.Min(bs, max - extra);
        }
        return extra;
    }

    private bool TryAllocate(out ulong block)
    {
        try
        {
            block = _md.AllocateDataBlock();
            CheckLowWater();
            return true;
        }
        catch (SpaceExhaustedException e) when (e.SpaceMap == "data")
        {
            block = 0;
            bool wasOut = _outOfData;
            _outOfData = true;
            if (!wasOut && !_settings.ErrorIfNoSpace)
                Warning?.Invoke($"pool {_dir} is out of data space: writes that need new blocks wait up to {_settings.NoSpaceTimeoutSeconds} s for `bapp pool resize --data-size`");
            return false;
        }
    }

    private VolumeException OutOfDataSpace() =>
        new(VolumeError.NoSpace, $"pool {_dir} is out of data space ({_md.NrDataBlocks} blocks in use); grow it with `bapp pool resize`");

    private void CheckLowWater()
    {
        ulong total = _md.NrDataBlocks, free = total - _md.DataBlocksUsed;
        bool below = free * 100.0 < _settings.LowWaterPercent * total;
        if (below && !_belowLowWater)
            Warning?.Invoke($"pool {_dir}: free data space is below the low-water mark ({free} of {total} blocks free, mark {_settings.LowWaterPercent}%); grow it with `bapp pool resize --data-size`");
        _belowLowWater = below;
    }

    private async Task WaitForSpace(Task spaceAdded, CancellationToken ct)
    {
        var timeout = TimeSpan.FromSeconds(_settings.NoSpaceTimeoutSeconds);
        var done = await Task.WhenAny(spaceAdded, Task.Delay(timeout, _time, ct)).ConfigureAwait(false);
        ct.ThrowIfCancellationRequested();
        if (done != spaceAdded)
            throw new VolumeException(VolumeError.NoSpace, $"pool {_dir} stayed out of data space for {timeout.TotalSeconds:F0} s; grow it with `bapp pool resize`");
    }

    private void ReadData(ulong dataBlock, int inBlock, Span<byte> into)
    {
        ReadZeroFilled(_data, into, (long)dataBlock * _settings.DataBlockSize + inBlock);
    }

    private void WriteData(ulong dataBlock, int inBlock, ReadOnlySpan<byte> data) =>
        WriteDataAt((long)dataBlock * _settings.DataBlockSize + inBlock, data);

    private void WriteDataAt(long at, ReadOnlySpan<byte> data)
    {
        try
        {
            RandomAccess.Write(_data, data, at);
        }
        catch (IOException e)
        {
            throw DataWriteFailed(e);
        }
    }

    private VolumeException DataWriteFailed(IOException e) =>
        new(VolumeError.IoError, $"writing the data file of pool {_dir} failed: {e.Message}", e);

    /// <summary>An unprovisioned range reads as zeroes, or from the external origin.</summary>
    private void ReadUnprovisioned(VolumeEntry v, long offset, Span<byte> into)
    {
        if (OriginHandle(v) is { } h)
            ReadOrigin(h, offset, into);
        else
            into.Clear();
    }

    /// <summary>An origin image shorter than its volume reads as zeroes past its end.</summary>
    private static void ReadOrigin(SafeFileHandle origin, long offset, Span<byte> into) => ReadZeroFilled(origin, into, offset);

    /// <summary>
    /// One read at <paramref name="at"/>; what lies past the file's end reads as zeroes (a data file
    /// shorter than its blocks, sparse at its tail; an origin shorter than its volume).
    /// </summary>
    private static void ReadZeroFilled(SafeFileHandle file, Span<byte> into, long at)
    {
        int got = RandomAccess.Read(file, into, at);
        if (got < into.Length)
            into[Math.Max(0, got)..].Clear();
    }

    /// <summary>The volume's external origin, opened on first use (under the lock) and kept until the pool closes.</summary>
    private SafeFileHandle? OriginHandle(VolumeEntry v)
    {
        if (v.Origin is null)
            return null;
        if (!_origins.TryGetValue(v.Origin, out var h))
            _origins[v.Origin] = h = File.OpenHandle(v.Origin, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return h;
    }

    /// <summary>
    /// Data first, then metadata (dm-thin's commit); then blocks freed by this commit are punched out.
    /// <paramref name="flushData"/> false only when the data every new mapping points at is known
    /// to be flushed already (see <see cref="FlushDataAhead"/>); the pool then stays dirty if data
    /// was written in place since that flush began, so that the next FLUSH, FUA write, periodic
    /// commit or close flushes it.
    /// </summary>
    private void CommitLocked(bool flushData = true)
    {
        if (_readOnlyReason is not null)
            return;
        if (_prison.InFlight != 0)
            throw new InvalidOperationException("a commit would record blocks allocated but not yet mapped; take the lock with EnterQuiesced");
        Guard(() =>
        {
            _md.SetTransactionId(_md.TransactionId, _md.TransactionId + 1);
            _md.Commit(flushData ? () => RandomAccess.FlushToDisk(_data) : null);
        });
        _dirty = !flushData && Volatile.Read(ref _writtenSinceFlush) != 0;
        bool inWindow = false;
        foreach (ulong b in _punchAfterCommit)
        {
            if (!FileSync.PunchHole(_data, (long)b * _settings.DataBlockSize, _settings.DataBlockSize))
                _lending = false;
            inWindow |= _preallocated.Contains(b);
        }
        _preallocated.ReleaseAfterCommit(current: inWindow, _isFreeDataBlock);
        _punchAfterCommit.Clear();
    }

    /// <summary>
    /// Runs a metadata operation. A failure that leaves the transaction half done (metadata space
    /// exhausted, a corrupt block, an I/O error) aborts it, sets needs_check and makes the pool
    /// read-only, as dm-thin does; the caller gets a clear error.
    /// </summary>
    private T Guard<T>(Func<T> op) => Guard(op, static f => f());

    /// <summary><see cref="Guard{T}(Func{T})"/> with its state passed in, so that a hot path's lambda captures nothing.</summary>
    private T Guard<TState, T>(TState state, Func<TState, T> op)
    {
        try
        {
            return op(state);
        }
        catch (Exception e) when (e is SpaceExhaustedException or CorruptMetadataException or IOException || _md.TransactionFailed)
        {
            if (e is SpaceExhaustedException { SpaceMap: "data" } && !_md.TransactionFailed)
                throw;
            string why = e is SpaceExhaustedException ? "metadata space is exhausted" : $"a metadata operation failed: {e.Message}";
            _punchAfterCommit.Clear();
            _generation++;
            _lending = false;
            try
            {
                _md.Abort();
                if (e is not SpaceExhaustedException)
                    _md.SetNeedsCheck(true);
            }
            catch (Exception abortFailure) when (abortFailure is IOException or CorruptMetadataException)
            {
                why += $"; reloading the last commit also failed: {abortFailure.Message}";
            }
            _readOnlyReason = e is SpaceExhaustedException
                ? $"{why}: the transaction was aborted; grow the metadata with `bapp pool resize --metadata-size`"
                : $"{why}: the transaction was aborted and needs_check set; run `bapp pool check`";
            _dirty = false;
            throw new VolumeException(e is SpaceExhaustedException ? VolumeError.NoSpace : VolumeError.IoError, $"pool {_dir}: {_readOnlyReason}", e);
        }
    }

    private void Guard(Action op) => Guard(() => { op(); return 0; });

    /// <summary>A virtual block's mapping, guarded; allocates nothing (reads and writes look up every block).</summary>
    private ThinMapping? Lookup(ulong dev, ulong vblock) =>
        Guard((_md, dev, vblock), static s => s.Item1.Lookup(s.Item2, s.Item3));

    private void RequireWritable()
    {
        ThrowIfDisposed();
        if (_readOnlyReason is not null)
            throw new VolumeException(VolumeError.ReadOnly, $"pool {_dir} is read-only: {_readOnlyReason}");
    }

    private void RequireWritableVolume(VolumeEntry v)
    {
        // The catalogue's entry decides, not the handle's copy: a volume may have been renamed to
        // read-only or deleted since the handle was opened.
        var current = _catalogue.Volumes.Find(e => e.DeviceId == v.DeviceId)
            ?? throw new VolumeException(VolumeError.InvalidArgument, $"volume {v.Name} no longer exists");
        if (current.ReadOnly)
            throw new VolumeException(VolumeError.ReadOnly, $"volume {current.Name} is a read-only snapshot");
        RequireWritable();
    }

    private void Locked(Action body) => Locked(() => { body(); return 0; });

    /// <summary>Runs <paramref name="body"/> under the lock with no batch in flight (it may commit).</summary>
    private T Locked<T>(Func<T> body)
    {
        bool barrier = EnterQuiesced();
        try
        {
            ThrowIfDisposed();
            return body();
        }
        finally
        {
            ExitQuiesced(barrier);
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    private async Task CommitLoop(TimeSpan interval)
    {
        using var timer = new PeriodicTimer(interval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false))
            {
                if (!_dirty)
                    continue;
                if (FlushDataAhead() is not { } flushed)
                    break;
                await CommitAfterFlushAheadAsync(flushed, _stop.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// The periodic commit's first half: flushes the data outside the lock so I/O keeps going
    /// meanwhile. The commit then has to flush again under the lock (holding all I/O) only if
    /// blocks were mapped since this flush began: their data may have been written after it. Data
    /// written in place meanwhile is no part of the metadata: the commit leaves the pool dirty
    /// instead, so a client's FLUSH or FUA (which flush under the lock) or the next commit flushes
    /// it; flushing it here cost sequential overwrites a third of their throughput (measured 2.7
    /// against 4.1 GB/s, with 30–220 ms a second of I/O held behind the lock). Returns whether the
    /// flush succeeded, or null once the pool is closed.
    /// </summary>
    internal bool? FlushDataAhead()
    {
        // Cleared before the flush begins: whatever sets them later may have missed it.
        Interlocked.Exchange(ref _mappedSinceFlush, 0);
        Interlocked.Exchange(ref _writtenSinceFlush, 0);
        try
        {
            RandomAccess.FlushToDisk(_data);
            return true;
        }
        catch (IOException)
        {
            return false; // the flush under the lock reports it and fails the commit
        }
        catch (ObjectDisposedException)
        {
            return null;
        }
    }

    /// <summary>The periodic commit's second half, after <see cref="FlushDataAhead"/>.</summary>
    internal async Task CommitAfterFlushAheadAsync(bool flushed, CancellationToken ct)
    {
        bool barrier = await EnterQuiescedAsync(ct).ConfigureAwait(false);
        try
        {
            if (!_disposed && _dirty && _readOnlyReason is null)
                CommitLocked(flushData: !flushed || Volatile.Read(ref _mappedSinceFlush) != 0);
        }
        catch (VolumeException)
        {
            // The pool is now read-only and says why; the next client request reports it.
        }
        finally
        {
            ExitQuiesced(barrier);
        }
    }

    /// <summary>Commits what is dirty and closes the files; a clean close leaves thin_check-valid metadata.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
            return;
        _stop.Cancel();
        await _committer.ConfigureAwait(false);
        bool barrier = await EnterQuiescedAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            if (_dirty && _readOnlyReason is null)
            {
                try { CommitLocked(); }
                catch (VolumeException) { }
            }
            if (!_dirty && _readOnlyReason is null)
                _preallocated.ReleaseAfterCommit(current: true, _isFreeDataBlock);
            _disposed = true;
            _md.Dispose();
            _data.Dispose();
            _direct?.Dispose();
            _copier.Dispose();
            foreach (var h in _origins.Values)
                h.Dispose();
            _folderLock.Dispose();
        }
        finally
        {
            ExitQuiesced(barrier);
        }
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
