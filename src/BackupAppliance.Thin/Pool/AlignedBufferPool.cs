using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace BackupAppliance.Thin.Pool;

/// <summary>
/// Buffers of one size whose memory starts on a <see cref="FileSync.DirectIoAlignment"/> boundary,
/// as direct I/O needs: pinned arrays (never moved by the GC) a little longer than asked, used from
/// their first aligned byte, and kept for reuse (up to a bound) once returned.
/// </summary>
internal sealed class AlignedBufferPool(int bufferSize, int keep)
{
    private readonly ConcurrentBag<byte[]> _free = new();

    public int BufferSize => bufferSize;

    public AlignedBuffer Rent()
    {
        if (!_free.TryTake(out var array))
            array = GC.AllocateUninitializedArray<byte>(bufferSize + FileSync.DirectIoAlignment, pinned: true);
        return new AlignedBuffer(this, array, AlignedStart(array), bufferSize);
    }

    internal void Return(byte[] array)
    {
        if (_free.Count < keep)
            _free.Add(array);
    }

    private static unsafe int AlignedStart(byte[] array)
    {
        nuint address = (nuint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        return (int)((FileSync.DirectIoAlignment - address % FileSync.DirectIoAlignment) % FileSync.DirectIoAlignment);
    }
}

/// <summary>A rented aligned buffer; dispose to give it back.</summary>
internal readonly struct AlignedBuffer(AlignedBufferPool pool, byte[] array, int start, int length) : IDisposable
{
    public Span<byte> Span => array.AsSpan(start, length);

    public int Length => length;

    public void Dispose() => pool.Return(array);
}
