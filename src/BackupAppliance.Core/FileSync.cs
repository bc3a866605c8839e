using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.Core;

/// <summary>The few POSIX calls .NET does not wrap: fsync of a folder, punching and finding holes, preallocation, direct I/O, page-cache residency.</summary>
public static partial class FileSync
{
    private const int ORdonly = 0, ODirectory = 0x10000;
    private const int FallocFlKeepSize = 0x01, FallocFlPunchHole = 0x02;
    private const int SeekData = 3, SeekHole = 4, Enxio = 6;
    private const int ORdwr = 2, OCloexec = 0x80000;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link(string existing, string newPath);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial long lseek(SafeFileHandle fd, long offset, int whence);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags, int mode);

    // cachestat(2), Linux 6.5 and later: the generic syscall table's number, the same on x86-64 and arm64.
    private const long CachestatSyscall = 451;

    [StructLayout(LayoutKind.Sequential)]
    private struct CachestatRange
    {
        public ulong Offset;
        public ulong Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Cachestat
    {
        public ulong Cache, Dirty, Writeback, Evicted, RecentlyEvicted;
    }

    [LibraryImport("libc", EntryPoint = "syscall")]
    private static partial long cachestat(long number, SafeFileHandle fd, ref CachestatRange range, out Cachestat stat, uint flags);

    /// <summary>fsync of a folder, so a rename in it is durable.</summary>
    public static void Directory(string dir)
    {
        int fd = open(dir, ORdonly | ODirectory);
        if (fd < 0)
            throw new IOException($"cannot open folder {dir} to sync it (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            if (fsync(fd) != 0)
                throw new IOException($"fsync of folder {dir} failed (errno {Marshal.GetLastPInvokeError()})");
        }
        finally
        {
            close(fd);
        }
    }

    /// <summary>
    /// A second name for an existing file (link(2)); both names then refer to the same bytes. Fails
    /// if <paramref name="newPath"/> exists. Not durable until the folder is synced.
    /// </summary>
    public static void HardLink(string existing, string newPath)
    {
        if (link(existing, newPath) != 0)
            throw new IOException($"cannot link {existing} as {newPath} (errno {Marshal.GetLastPInvokeError()})");
    }

    /// <summary>Deallocates a byte range of a file (it reads as zeroes); false where the file system cannot.</summary>
    public static bool PunchHole(SafeFileHandle file, long offset, long length) =>
        fallocate(file, FallocFlPunchHole | FallocFlKeepSize, offset, length) == 0;

    /// <summary>
    /// The next run of data (not a hole) of a file in [<paramref name="offset"/>, <paramref name="end"/>):
    /// where it starts and where the next hole after it starts (lseek SEEK_DATA, SEEK_HOLE; the
    /// file's end counts as a hole). (end, end) when only holes follow. A file system that cannot
    /// tell holes answers one run of data from <paramref name="offset"/> to <paramref name="end"/>;
    /// a run is never empty, so a caller walking runs always moves on.
    /// </summary>
    public static (long Start, long End) NextDataRun(SafeFileHandle file, long offset, long end)
    {
        if (offset >= end)
            return (end, end);
        long start = lseek(file, offset, SeekData);
        if (start < 0)
            return Marshal.GetLastPInvokeError() == Enxio ? (end, end) : (offset, end);
        if (start >= end)
            return (end, end);
        long hole = lseek(file, start, SeekHole);
        return (start, hole > start ? Math.Min(hole, end) : end);
    }

    /// <summary>
    /// Allocates a byte range of a file as unwritten extents (it still reads as zeroes; no data is
    /// written), without changing its size; false where the file system cannot.
    /// </summary>
    public static bool Preallocate(SafeFileHandle file, long offset, long length) =>
        fallocate(file, FallocFlKeepSize, offset, length) == 0;

    /// <summary>
    /// How many pages of [<paramref name="offset"/>, +<paramref name="length"/>) of a file the page
    /// cache holds (cachestat(2)); null where the kernel cannot say (before Linux 6.5) or
    /// <paramref name="length"/> is not positive.
    /// </summary>
    public static ulong? CachedPages(SafeFileHandle file, long offset, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0)
            return null;
        var range = new CachestatRange { Offset = (ulong)offset, Length = (ulong)length };
        return cachestat(CachestatSyscall, file, ref range, out var stat, 0) == 0 ? stat.Cache : null;
    }

    /// <summary>
    /// Opens a file read-write for direct I/O (O_DIRECT: past the page cache; memory, offsets and
    /// lengths aligned to <see cref="AlignedBufferPool.Alignment"/>); null where the platform or the file
    /// system has none.
    /// </summary>
    public static SafeFileHandle? OpenDirect(string path)
    {
        // O_DIRECT's value depends on the architecture.
        int direct = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 or Architecture.X86 => 0x4000,
            Architecture.Arm64 or Architecture.Arm => 0x10000,
            _ => 0,
        };
        if (!OperatingSystem.IsLinux() || direct == 0)
            return null;
        int fd = open(path, ORdwr | OCloexec | direct, 0);
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
    }
}
