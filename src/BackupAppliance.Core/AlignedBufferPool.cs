using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace BackupAppliance.Core;

/// <summary>
/// Buffers of one size whose memory starts on an <see cref="Alignment"/> boundary, as direct I/O
/// (O_DIRECT) needs: pinned arrays (never moved by the GC) a little longer than asked, used from
/// their first aligned byte, and kept for reuse (up to <c>keep</c> of them) once returned.
/// Thread-safe.
/// </summary>
public sealed class AlignedBufferPool(int bufferSize, int keep)
{
    /// <summary>What direct I/O asks of memory addresses, file offsets and lengths (the page size covers every block device).</summary>
    public const int Alignment = 4096;

    private readonly ConcurrentBag<byte[]> _free = new();

    public int BufferSize => bufferSize;

    public AlignedBuffer Rent()
    {
        if (!_free.TryTake(out var array))
            array = GC.AllocateUninitializedArray<byte>(bufferSize + Alignment, pinned: true);
        return new AlignedBuffer(this, array, AlignedStart(array), bufferSize);
    }

    internal void Return(byte[] array)
    {
        if (_free.Count < keep)
            _free.Add(array);
    }

    /// <summary>Whether <paramref name="memory"/> starts on an <see cref="Alignment"/> boundary.</summary>
    public static unsafe bool IsAligned(ReadOnlySpan<byte> memory) =>
        (nuint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(memory)) % Alignment == 0;

    private static unsafe int AlignedStart(byte[] array)
    {
        nuint address = (nuint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        return (int)((Alignment - address % Alignment) % Alignment);
    }
}

/// <summary>A rented aligned buffer; dispose it once to give it back.</summary>
public readonly struct AlignedBuffer(AlignedBufferPool pool, byte[] array, int start, int length) : IDisposable
{
    public Span<byte> Span => array.AsSpan(start, length);

    public Memory<byte> Memory => array.AsMemory(start, length);

    public int Length => length;

    public void Dispose() => pool.Return(array);
}
