using System.Buffers;
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
/// FUA write. One lock serialises metadata and data access.
/// </summary>
public sealed partial class ThinPool : IAsyncDisposable, IDisposable
{
    public const string MetadataFile = "metadata";
    public const string DataFile = "data";

    public const string LockFile = "lock";

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
    private TaskCompletionSource _spaceAdded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private PoolSettings _settings;
    private VolumeCatalogue _catalogue;
    private bool _dirty;
    private bool _disposed;
    private string? _readOnlyReason;
    private bool _outOfData;
    private bool _belowLowWater;

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
            return new ThinPool(dir, folderLock, md, data, settings, catalogue, time ?? TimeProvider.System, commitInterval ?? TimeSpan.FromSeconds(1));
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
            ulong id = NextDeviceId();
            Guard(() => _md.CreateThin(id));
            CommitLocked();
            var entry = new VolumeEntry { Name = name, DeviceId = id, Size = size, Origin = origin, Created = _time.GetUtcNow() };
            _catalogue.Volumes.Add(entry);
            _catalogue.NextDeviceId = id + 1;
            _catalogue.Save(_dir);
            return new ThinVolume(this, entry);
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
            ulong id = NextDeviceId();
            Guard(() => _md.CreateSnapshot(id, origin.DeviceId));
            CommitLocked();
            var entry = new VolumeEntry
            {
                Name = snapshotName, DeviceId = id, Size = origin.Size, ReadOnly = readOnly, SnapshotOf = name,
                Origin = origin.Origin, Created = _time.GetUtcNow(), ChangeEpoch = changeEpoch,
            };
            _catalogue.Volumes.Add(entry);
            _catalogue.NextDeviceId = id + 1;
            _catalogue.Save(_dir);
            return new ThinVolume(this, entry);
        });
    }

    /// <summary>Deletes a volume; data blocks no other volume shares are freed and punched out of the data file.</summary>
    public void DeleteVolume(string name)
    {
        Locked(() =>
        {
            RequireWritable();
            var v = _catalogue.Find(name) ?? throw new KeyNotFoundException($"no volume named '{name}'");
            var blocks = new List<ulong>();
            _md.VisitMappings(v.DeviceId, leaf =>
            {
                for (int i = 0; i < leaf.NrEntries; i++)
                    blocks.Add(BlockTime.Unpack(leaf.Value64(i)).DataBlock);
            });
            Guard(() => _md.DeleteDevice(v.DeviceId));
            foreach (ulong b in blocks)
                if (_md.DataBlockRefCount(b) == 0)
                    _punchAfterCommit.Add(b);
            // Catalogue first: a crash after it leaves an orphan device (found by pool check), never a name without a device.
            _catalogue.Volumes.Remove(v);
            _catalogue.Save(_dir);
            CommitLocked();
        });
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

    internal async ValueTask ReadAsync(VolumeEntry v, long offset, Memory<byte> buffer, CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            ThrowIfDisposed();
            int bs = _settings.DataBlockSize;
            long pos = offset;
            int done = 0;
            while (done < buffer.Length)
            {
                long vblock = pos / bs;
                int inBlock = (int)(pos % bs);
                int n = Math.Min(buffer.Length - done, bs - inBlock);
                var m = Guard(() => _md.Lookup(v.DeviceId, (ulong)vblock));
                if (m is { } map)
                    n += ContiguousRun(v, vblock, map.DataBlock, buffer.Length - done - n, shared: null);
                var dst = buffer.Span.Slice(done, n);
                if (m is { } mapped)
                    ReadData(mapped.DataBlock, inBlock, dst);
                else
                    ReadUnprovisioned(v, pos, dst);
                pos += n;
                done += n;
            }
        }
        finally
        {
            _lock.Release();
        }
    }

    internal async ValueTask WriteAsync(VolumeEntry v, long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken ct)
    {
        while (true)
        {
            Task spaceAdded;
            await _lock.WaitAsync(ct).ConfigureAwait(false);
            try
            {
                ThrowIfDisposed();
                RequireWritableVolume(v);
                if (TryWrite(v, offset, data.Span))
                {
                    _dirty = true;
                    if (fua)
                        CommitLocked();
                    return;
                }
                spaceAdded = _spaceAdded.Task;
            }
            finally
            {
                _lock.Release();
            }
            await WaitForSpace(spaceAdded, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Writes block by block; false when data space ran out (what was written stays: a retry rewrites it in place).</summary>
    private bool TryWrite(VolumeEntry v, long offset, ReadOnlySpan<byte> src)
    {
        int bs = _settings.DataBlockSize;
        long pos = offset;
        while (src.Length > 0)
        {
            long vblock = pos / bs;
            int inBlock = (int)(pos % bs);
            int n = Math.Min(src.Length, bs - inBlock);
            var m = Guard(() => _md.Lookup(v.DeviceId, (ulong)vblock));
            if (m is { Shared: false } map)
            {
                n += ContiguousRun(v, vblock, map.DataBlock, src.Length - n, shared: false);
                WriteData(map.DataBlock, inBlock, src[..n]);
            }
            else
            {
                if (!TryAllocate(out ulong fresh))
                    return false;
                byte[] block = ArrayPool<byte>.Shared.Rent(bs);
                try
                {
                    var whole = block.AsSpan(0, bs);
                    if (n < bs)
                    {
                        // Partial write: the rest of the block comes from the shared block, the origin, or zeroes.
                        if (m is { } shared)
                            ReadData(shared.DataBlock, 0, whole);
                        else
                            ReadUnprovisioned(v, vblock * bs, whole);
                    }
                    src[..n].CopyTo(whole[inBlock..]);
                    WriteData(fresh, 0, whole);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(block);
                }
                Guard(() => _md.Insert(v.DeviceId, (ulong)vblock, fresh));
            }
            src = src[n..];
            pos += n;
        }
        return true;
    }

    internal async ValueTask DiscardAsync(VolumeEntry v, long offset, long length, bool fua, CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            ThrowIfDisposed();
            RequireWritableVolume(v);
            int bs = _settings.DataBlockSize;
            long first = (offset + bs - 1) / bs, end = (offset + length) / bs;
            // dm-thin discards whole blocks only; a tail block of the volume counts as whole when the range reaches the end.
            if (offset + length == v.Size && v.Size % bs != 0)
                end = (v.Size + bs - 1) / bs;
            UnmapBlocks(v, first, end);
            _dirty = true;
            if (fua)
                CommitLocked();
        }
        finally
        {
            _lock.Release();
        }
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
                await WriteAsync(v, pos, zeroes.AsMemory(0, (int)n), fua: false, ct).ConfigureAwait(false);
            // else: an unprovisioned block without an origin already reads as zeroes.
            pos += n;
        }
        if (fua)
            await FlushAsync(ct).ConfigureAwait(false);
    }

    private async ValueTask<bool> IsMappedAsync(VolumeEntry v, long vblock, CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try { return Guard(() => _md.Lookup(v.DeviceId, (ulong)vblock)) is not null; }
        finally { _lock.Release(); }
    }

    internal async ValueTask FlushAsync(CancellationToken ct)
    {
        await _lock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            ThrowIfDisposed();
            if (_dirty && _readOnlyReason is null)
                CommitLocked();
        }
        finally
        {
            _lock.Release();
        }
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
            var m = Guard(() => _md.Lookup(v.DeviceId, vb));
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
            var next = Guard(() => _md.Lookup(v.DeviceId, (ulong)(vblock + k)));
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
            if (_settings.ErrorIfNoSpace)
                throw new VolumeException(VolumeError.NoSpace, $"pool {_dir} is out of data space ({_md.NrDataBlocks} blocks in use); grow it with `bapp pool resize`");
            if (!wasOut)
                Warning?.Invoke($"pool {_dir} is out of data space: writes that need new blocks wait up to {_settings.NoSpaceTimeoutSeconds} s for `bapp pool resize --data-size`");
            return false;
        }
    }

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
        long at = (long)dataBlock * _settings.DataBlockSize + inBlock;
        int got = RandomAccess.Read(_data, into, at);
        if (got < into.Length)
            into[got..].Clear(); // a data file shorter than its blocks reads as zeroes (sparse tail)
    }

    private void WriteData(ulong dataBlock, int inBlock, ReadOnlySpan<byte> data)
    {
        try
        {
            RandomAccess.Write(_data, data, (long)dataBlock * _settings.DataBlockSize + inBlock);
        }
        catch (IOException e)
        {
            throw new VolumeException(VolumeError.IoError, $"writing the data file of pool {_dir} failed: {e.Message}", e);
        }
    }

    /// <summary>An unprovisioned range reads as zeroes, or from the external origin.</summary>
    private void ReadUnprovisioned(VolumeEntry v, long offset, Span<byte> into)
    {
        if (v.Origin is null)
        {
            into.Clear();
            return;
        }
        if (!_origins.TryGetValue(v.Origin, out var h))
            _origins[v.Origin] = h = File.OpenHandle(v.Origin, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        int got = RandomAccess.Read(h, into, offset);
        if (got < into.Length)
            into[Math.Max(0, got)..].Clear();
    }

    /// <summary>Data first, then metadata (dm-thin's commit); then blocks freed by this commit are punched out.</summary>
    private void CommitLocked()
    {
        if (_readOnlyReason is not null)
            return;
        Guard(() =>
        {
            _md.SetTransactionId(_md.TransactionId, _md.TransactionId + 1);
            _md.Commit(() => RandomAccess.FlushToDisk(_data));
        });
        _dirty = false;
        foreach (ulong b in _punchAfterCommit)
            FileSync.PunchHole(_data, (long)b * _settings.DataBlockSize, _settings.DataBlockSize);
        _punchAfterCommit.Clear();
    }

    /// <summary>
    /// Runs a metadata operation. A failure that leaves the transaction half done (metadata space
    /// exhausted, a corrupt block, an I/O error) aborts it, sets needs_check and makes the pool
    /// read-only, as dm-thin does; the caller gets a clear error.
    /// </summary>
    private T Guard<T>(Func<T> op)
    {
        try
        {
            return op();
        }
        catch (Exception e) when (e is SpaceExhaustedException or CorruptMetadataException or IOException || _md.TransactionFailed)
        {
            if (e is SpaceExhaustedException { SpaceMap: "data" } && !_md.TransactionFailed)
                throw;
            string why = e is SpaceExhaustedException ? "metadata space is exhausted" : $"a metadata operation failed: {e.Message}";
            _punchAfterCommit.Clear();
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

    private T Locked<T>(Func<T> body)
    {
        _lock.Wait();
        try
        {
            ThrowIfDisposed();
            return body();
        }
        finally
        {
            _lock.Release();
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
                // Flush most dirty data outside the lock so I/O keeps going meanwhile; the commit
                // under the lock flushes again (only what was written since), then the metadata.
                try { RandomAccess.FlushToDisk(_data); }
                catch (IOException) { } // the flush under the lock reports it and fails the commit
                catch (ObjectDisposedException) { break; }
                await _lock.WaitAsync(_stop.Token).ConfigureAwait(false);
                try
                {
                    if (!_disposed && _dirty && _readOnlyReason is null)
                        CommitLocked();
                }
                catch (VolumeException)
                {
                    // The pool is now read-only and says why; the next client request reports it.
                }
                finally
                {
                    _lock.Release();
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>Commits what is dirty and closes the files; a clean close leaves thin_check-valid metadata.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed)
            return;
        _stop.Cancel();
        await _committer.ConfigureAwait(false);
        await _lock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_dirty && _readOnlyReason is null)
            {
                try { CommitLocked(); }
                catch (VolumeException) { }
            }
            _disposed = true;
            _md.Dispose();
            _data.Dispose();
            foreach (var h in _origins.Values)
                h.Dispose();
            _folderLock.Dispose();
        }
        finally
        {
            _lock.Release();
        }
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
