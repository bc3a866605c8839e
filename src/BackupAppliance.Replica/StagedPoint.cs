using BackupAppliance.Core;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Wire;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Replica;

/// <summary>
/// One staging of a <see cref="ReplicaStore"/>: a writable thin volume (a snapshot of the base point,
/// or empty for a full backup), its block hash table and its durable progress. Disposing it keeps
/// the staging for a later <see cref="ReplicaStore.ResumeStagingAsync"/>.
/// </summary>
internal sealed class StagedPoint : IStagedPoint
{
    private readonly ReplicaStore _store;
    private readonly int _blockSize;
    private readonly long _size;
    private StagingState _state;
    private long _changes;
    private long _digestAt = -1;
    private byte[]? _digest;
    private bool _closed;

    public StagedPoint(ReplicaStore store, ThinVolume volume, BlockHashTable table, StagingState state)
    {
        _store = store;
        Volume = volume;
        Table = table;
        _state = state;
        _blockSize = state.Request.BlockSize;
        _size = state.Request.Size;
    }

    public StagingState State => _state;
    internal ThinVolume Volume { get; }
    internal BlockHashTable Table { get; }

    public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, ReadOnlyMemory<byte> blockHashes, CancellationToken cancellationToken)
    {
        ThrowIfClosed();
        CheckWrite(offset, data.Length, blockHashes.Length);
        await Volume.WriteStreamingAsync(offset, data, cancellationToken).ConfigureAwait(false);
        Table.Set(offset / _blockSize, blockHashes.Span);
        _changes++;
    }

    /// <summary>The extents' new blocks go into the pool as one batch: side by side, written together.</summary>
    public async ValueTask WriteAsync(IReadOnlyList<StagedWrite> extents, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
    {
        ThrowIfClosed();
        var ranges = new VolumeRange[extents.Count];
        long total = 0;
        for (int i = 0; i < extents.Count; i++)
        {
            var e = extents[i];
            CheckWrite(e.Offset, e.Length, e.BlockHashes.Length);
            ranges[i] = new VolumeRange(e.Offset, e.Length);
            total += e.Length;
        }
        if (total != data.Length)
            throw Invalid($"{extents.Count} extents cover {total} bytes, but {data.Length} bytes of data came with them");
        await Volume.WriteStreamingAsync(ranges, data, cancellationToken).ConfigureAwait(false);
        foreach (var e in extents)
            Table.Set(e.Offset / _blockSize, e.BlockHashes.Span);
        _changes++;
    }

    private void CheckWrite(long offset, int length, int hashBytes)
    {
        CheckExtent(offset, length);
        int blocks = BlockHashes.Count(length, _blockSize);
        if (hashBytes != blocks * WireProtocol.BlockHashSize)
            throw Invalid($"{length} bytes at {offset} are {blocks} blocks and need {blocks * WireProtocol.BlockHashSize} bytes of hashes, not {hashBytes}");
    }

    public async ValueTask ZeroAsync(long offset, long length, bool discard, CancellationToken cancellationToken)
    {
        ThrowIfClosed();
        CheckExtent(offset, length);
        // Both kinds unmap whole pool blocks (zeros need no space in a replica) and write zeros into
        // partial ones; a discard says why the range is empty, not how the replica keeps it.
        await Volume.WriteZeroesAsync(offset, length, noHole: false, fua: false, cancellationToken).ConfigureAwait(false);
        Table.SetZero(offset / _blockSize, BlockHashes.Count(length, _blockSize));
        _changes++;
    }

    public async ValueTask MakeDurableAsync(ulong sequence, long position, long changedBytes, CancellationToken cancellationToken)
    {
        ThrowIfClosed();
        if (sequence < _state.DurableSequence || position < _state.DurablePosition || changedBytes < _state.ChangedBytes)
            throw Invalid($"progress cannot go back: durable is seq {_state.DurableSequence}, position {_state.DurablePosition}, {_state.ChangedBytes} bytes; asked seq {sequence}, position {position}, {changedBytes} bytes");
        if (position > _size)
            throw Invalid($"position {position} is beyond the image ({_size} bytes)");
        // Data and the pool's metadata, then the hash table, and only then the record that claims them.
        await Volume.FlushAsync(cancellationToken).ConfigureAwait(false);
        Table.Flush();
        var next = _state with { DurableSequence = sequence, DurablePosition = position, ChangedBytes = changedBytes };
        _store.RecordProgress(this, next);
        _state = next;
    }

    public byte[] ComputeDigest()
    {
        ThrowIfClosed();
        if (_digestAt != _changes || _digest is null)
        {
            _digest = Table.ComputeDigest();
            _digestAt = _changes;
        }
        return _digest.ToArray();
    }

    public ValueTask<ReplicaPoint> PublishAsync(byte[] digest, CancellationToken cancellationToken)
    {
        ThrowIfClosed();
        ArgumentNullException.ThrowIfNull(digest);
        if (digest.Length != WireProtocol.DigestSize)
            throw Invalid($"a digest is {WireProtocol.DigestSize} bytes, not {digest.Length}");
        // The caller compared already; a point must never carry a digest its table does not have.
        var actual = ComputeDigest();
        if (!actual.AsSpan().SequenceEqual(digest))
            throw Invalid($"digest {Convert.ToHexStringLower(digest)} differs from the staged table's {Convert.ToHexStringLower(actual)}; nothing was published");
        return _store.PublishAsync(this, digest, cancellationToken);
    }

    public ValueTask AbandonAsync(CancellationToken cancellationToken)
    {
        ThrowIfClosed();
        return _store.AbandonAsync(this, cancellationToken);
    }

    /// <summary>Releases the handles; the staging stays on disk.</summary>
    public ValueTask DisposeAsync()
    {
        if (!_closed)
        {
            Close();
            _store.Forget(this);
        }
        return ValueTask.CompletedTask;
    }

    internal void Close()
    {
        if (_closed)
            return;
        _closed = true;
        Table.Dispose();
    }

    private void CheckExtent(long offset, long length)
    {
        if (offset < 0 || length <= 0 || offset > _size - length)
            throw Invalid($"range {offset}+{length} is outside the image ({_size} bytes)");
        if (offset % _blockSize != 0 || (length % _blockSize != 0 && offset + length != _size))
            throw Invalid($"range {offset}+{length} is not aligned to {_blockSize}-byte blocks (only the image's last block may end at its size)");
    }

    private ReplicaStoreException Invalid(string text) =>
        new(ReplicaStoreError.InvalidRequest, $"staging of {_state.Request.Agent}/{_state.Request.Volume}: {text}");

    private void ThrowIfClosed()
    {
        if (_closed)
            throw new ObjectDisposedException(nameof(IStagedPoint), $"this staging of {_state.Request.Agent}/{_state.Request.Volume} was published, abandoned, closed or superseded by a resume");
    }
}
