using System.Buffers;
using BackupAppliance.Core;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Replica;

/// <summary>
/// Writes a volume to a sparse image file: the file has the volume's length, holes where the volume
/// is unmapped, and only non-zero 4 KiB runs of mapped ranges are written. Written to
/// <c>&lt;path&gt;.partial</c>, fsynced, then renamed, so a half image never has the final name.
/// </summary>
internal static class SparseImage
{
    private const int Chunk = 1 << 20;
    private const int ZeroGrain = 4096;

    public static async ValueTask WriteAsync(IBlockVolume source, string path, bool overwrite, IProgress<long>? progress, CancellationToken ct)
    {
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Chunk);
        try
        {
            await AtomicFile.WriteAsync(path, ".partial", overwrite, async partial =>
            {
                using var file = File.OpenHandle(partial, FileMode.Create, FileAccess.ReadWrite, FileShare.None);
                RandomAccess.SetLength(file, source.Size);
                var extents = await source.GetAllocationAsync(0, source.Size, ct).ConfigureAwait(false);
                foreach (var e in extents)
                {
                    for (long pos = e.Offset; !e.IsHole && pos < e.Offset + e.Length; pos += Chunk)
                    {
                        int n = (int)Math.Min(Chunk, e.Offset + e.Length - pos);
                        await source.ReadAsync(pos, buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                        WriteNonZero(file, buffer.AsSpan(0, n), pos);
                        progress?.Report(pos + n);
                    }
                    if (e.IsHole)
                        progress?.Report(e.Offset + e.Length);
                }
                RandomAccess.FlushToDisk(file);
            }).ConfigureAwait(false);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Writes each run of grains that are not all zeros; zero grains stay holes.</summary>
    private static void WriteNonZero(Microsoft.Win32.SafeHandles.SafeFileHandle file, ReadOnlySpan<byte> data, long at)
    {
        int start = -1;
        for (int i = 0; i < data.Length; i += ZeroGrain)
        {
            bool zero = !data.Slice(i, Math.Min(ZeroGrain, data.Length - i)).ContainsAnyExcept((byte)0);
            if (!zero && start < 0)
                start = i;
            else if (zero && start >= 0)
            {
                RandomAccess.Write(file, data[start..i], at + start);
                start = -1;
            }
        }
        if (start >= 0)
            RandomAccess.Write(file, data[start..], at + start);
    }
}
