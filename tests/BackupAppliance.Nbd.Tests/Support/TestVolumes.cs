using System.Collections.Concurrent;
using System.Security.Cryptography;
using BackupAppliance.Core;

namespace BackupAppliance.Nbd.Tests.Support;

/// <summary>A read-only view of a volume (so a read-only export can hold data written beforehand).</summary>
public sealed class ReadOnlyView(IBlockVolume inner, string? name = null) : IBlockVolume
{
    public string Name { get; } = name ?? inner.Name;
    public long Size => inner.Size;
    public int BlockSize => inner.BlockSize;
    public bool IsReadOnly => true;

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken) => inner.ReadAsync(offset, buffer, cancellationToken);
    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken) => throw Refused();
    public ValueTask DiscardAsync(long offset, long length, bool fua, CancellationToken cancellationToken) => throw Refused();
    public ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua, CancellationToken cancellationToken) => throw Refused();
    public ValueTask FlushAsync(CancellationToken cancellationToken) => ValueTask.CompletedTask;
    public ValueTask<IReadOnlyList<VolumeExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken) => inner.GetAllocationAsync(offset, length, cancellationToken);

    private VolumeException Refused() => new(VolumeError.ReadOnly, $"volume {Name} is read-only");
}

/// <summary>One call the server made on a volume.</summary>
public sealed record VolumeCall(string Op, long Offset, long Length, bool Fua = false, bool NoHole = false);

/// <summary>
/// A decorator that records every call, can fail calls with a chosen exception, and can hold a
/// read at a chosen offset until released (to prove requests run concurrently).
/// </summary>
public sealed class InstrumentedVolume(IBlockVolume inner) : IBlockVolume
{
    private readonly ConcurrentQueue<VolumeCall> _calls = new();

    public string Name => inner.Name;
    public long Size => inner.Size;
    public int BlockSize => inner.BlockSize;
    public bool IsReadOnly => inner.IsReadOnly;

    public IReadOnlyList<VolumeCall> Calls => [.. _calls];

    /// <summary>When set, every call throws what this returns (null: proceed).</summary>
    public Func<VolumeCall, Exception?>? Fault { get; set; }

    /// <summary>Reads at <see cref="HeldReadOffset"/> wait for this to complete.</summary>
    public TaskCompletionSource? ReadGate { get; set; }
    public long HeldReadOffset { get; set; } = -1;

    public void ClearCalls() => _calls.Clear();

    private void Record(VolumeCall call)
    {
        _calls.Enqueue(call);
        if (Fault?.Invoke(call) is { } e)
            throw e;
    }

    public async ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        Record(new("read", offset, buffer.Length));
        if (offset == HeldReadOffset && ReadGate is { } gate)
            await gate.Task.WaitAsync(cancellationToken);
        await inner.ReadAsync(offset, buffer, cancellationToken);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        Record(new("write", offset, data.Length, fua));
        return inner.WriteAsync(offset, data, fua, cancellationToken);
    }

    public ValueTask DiscardAsync(long offset, long length, bool fua, CancellationToken cancellationToken)
    {
        Record(new("discard", offset, length, fua));
        return inner.DiscardAsync(offset, length, fua, cancellationToken);
    }

    public ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua, CancellationToken cancellationToken)
    {
        Record(new("zero", offset, length, fua, noHole));
        return inner.WriteZeroesAsync(offset, length, noHole, fua, cancellationToken);
    }

    public ValueTask FlushAsync(CancellationToken cancellationToken)
    {
        Record(new("flush", 0, 0));
        return inner.FlushAsync(cancellationToken);
    }

    public ValueTask<IReadOnlyList<VolumeExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken)
    {
        Record(new("status", offset, length));
        return inner.GetAllocationAsync(offset, length, cancellationToken);
    }
}

/// <summary>A decorator that notes the thread each read and write of the volume ran on.</summary>
public sealed class ThreadRecordingVolume(IBlockVolume inner) : IBlockVolume
{
    private readonly ConcurrentQueue<(int ThreadId, bool PoolThread)> _threads = new();

    public string Name => inner.Name;
    public long Size => inner.Size;
    public int BlockSize => inner.BlockSize;
    public bool IsReadOnly => inner.IsReadOnly;

    public IReadOnlyList<(int ThreadId, bool PoolThread)> Threads => [.. _threads];

    private void Note() => _threads.Enqueue((Environment.CurrentManagedThreadId, Thread.CurrentThread.IsThreadPoolThread));

    public ValueTask ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        Note();
        return inner.ReadAsync(offset, buffer, cancellationToken);
    }

    public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, bool fua, CancellationToken cancellationToken)
    {
        Note();
        return inner.WriteAsync(offset, data, fua, cancellationToken);
    }

    public ValueTask DiscardAsync(long offset, long length, bool fua, CancellationToken cancellationToken) => inner.DiscardAsync(offset, length, fua, cancellationToken);
    public ValueTask WriteZeroesAsync(long offset, long length, bool noHole, bool fua, CancellationToken cancellationToken) => inner.WriteZeroesAsync(offset, length, noHole, fua, cancellationToken);
    public ValueTask FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);
    public ValueTask<IReadOnlyList<VolumeExtent>> GetAllocationAsync(long offset, long length, CancellationToken cancellationToken) => inner.GetAllocationAsync(offset, length, cancellationToken);
}

public static class VolumeDigest
{
    /// <summary>
    /// SHA-256 over a volume's allocation map and the bytes of its mapped extents: equal digests
    /// mean equal contents (holes read as zeroes) without reading a sparse gigabyte.
    /// </summary>
    public static async Task<string> ComputeAsync(IBlockVolume volume)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[4 << 20];
        foreach (var extent in await volume.GetAllocationAsync(0, volume.Size, CancellationToken.None))
        {
            hash.AppendData(BitConverter.GetBytes(extent.Offset));
            hash.AppendData(BitConverter.GetBytes(extent.Length));
            hash.AppendData([extent.IsHole ? (byte)1 : (byte)0]);
            if (extent.IsHole)
                continue;
            for (long pos = extent.Offset; pos < extent.Offset + extent.Length; pos += buffer.Length)
            {
                int n = (int)Math.Min(buffer.Length, extent.Offset + extent.Length - pos);
                await volume.ReadAsync(pos, buffer.AsMemory(0, n), CancellationToken.None);
                hash.AppendData(buffer, 0, n);
            }
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }
}
