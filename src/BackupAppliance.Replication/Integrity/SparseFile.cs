using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.Replication.Integrity;

/// <summary>
/// Holes of a sparse file (Linux): where its data starts and ends (lseek SEEK_DATA / SEEK_HOLE), and
/// punching a range back into a hole (fallocate). A file system without these answers "all data"
/// and "cannot punch", which callers treat as a plain file.
/// </summary>
internal static partial class SparseFile
{
    private const int SeekData = 3, SeekHole = 4;
    private const int FallocFlKeepSize = 0x01, FallocFlPunchHole = 0x02;
    private const int Enxio = 6;

    [LibraryImport("libc", SetLastError = true)]
    private static partial long lseek(SafeFileHandle fd, long offset, int whence);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long length);

    /// <summary>The first offset at or after <paramref name="offset"/> that holds data; <paramref name="end"/> when none does before it.</summary>
    public static long NextData(SafeFileHandle file, long offset, long end)
    {
        if (offset >= end)
            return end;
        long at = lseek(file, offset, SeekData);
        if (at >= 0)
            return Math.Min(at, end);
        return Marshal.GetLastPInvokeError() == Enxio ? end : offset; // ENXIO: only a hole follows; else: no hole support
    }

    /// <summary>The first offset at or after <paramref name="offset"/> in a hole (the file's end counts as one), at most <paramref name="end"/>.</summary>
    public static long NextHole(SafeFileHandle file, long offset, long end)
    {
        if (offset >= end)
            return end;
        long at = lseek(file, offset, SeekHole);
        return at >= 0 ? Math.Min(at, end) : end;
    }

    /// <summary>Makes a range read as zeros, freeing its whole file-system blocks; false if the file system cannot.</summary>
    public static bool TryPunch(SafeFileHandle file, long offset, long length) =>
        length == 0 || fallocate(file, FallocFlPunchHole | FallocFlKeepSize, offset, length) == 0;
}
