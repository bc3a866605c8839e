using System.Runtime.InteropServices;

namespace BackupAppliance.Thin.Tests.Support;

/// <summary>
/// cachestat(2) (Linux 6.5 and later): how many of a file's pages the page cache holds, and how
/// many of them dirty or under writeback. Unflushed is zero right after an fsync; a write since then
/// that nothing flushed shows there. <see cref="Evict"/> drops a file's clean pages.
/// </summary>
public static partial class PageCache
{
    // The generic syscall table's number, the same on x86-64 and arm64.
    private const long CachestatSyscall = 451;
    private const int ENOSYS = 38;

    [StructLayout(LayoutKind.Sequential)]
    private struct CachestatRange
    {
        public ulong Offset;
        public ulong Length; // 0: to the end of the file
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Cachestat
    {
        public ulong Cache, Dirty, Writeback, Evicted, RecentlyEvicted;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number, int fd, ref CachestatRange range, out Cachestat stat, uint flags);

    private const int PosixFadvDontNeed = 4;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int posix_fadvise(int fd, long offset, long length, int advice);

    /// <summary>Pages of the whole file that are dirty or being written back.</summary>
    public static ulong UnflushedPages(string path)
    {
        var stat = Stat(path);
        return stat.Dirty + stat.Writeback;
    }

    /// <summary>Pages of the whole file the page cache holds.</summary>
    public static ulong CachedPages(string path) => Stat(path).Cache;

    /// <summary>Writes the file's dirty pages back and asks the kernel to drop all its pages.</summary>
    public static void Evict(string path)
    {
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        RandomAccess.FlushToDisk(file);
        int result = posix_fadvise((int)file.DangerousGetHandle(), 0, 0, PosixFadvDontNeed);
        if (result != 0)
            throw new InvalidOperationException($"posix_fadvise({path}, DONTNEED) failed (errno {result})");
    }

    private static Cachestat Stat(string path)
    {
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var range = new CachestatRange();
        if (syscall(CachestatSyscall, (int)file.DangerousGetHandle(), ref range, out var stat, 0) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            throw new InvalidOperationException(errno == ENOSYS
                ? "this kernel has no cachestat(2) (Linux 6.5 or later is needed)"
                : $"cachestat({path}) failed (errno {errno})");
        }
        return stat;
    }
}
