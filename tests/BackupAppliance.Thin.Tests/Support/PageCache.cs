using System.Runtime.InteropServices;

namespace BackupAppliance.Thin.Tests.Support;

/// <summary>
/// cachestat(2) (Linux 6.5 and later): how many of a file's pages the page cache holds dirty or
/// under writeback. Zero right after an fsync; a write since then that nothing flushed shows here.
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

    /// <summary>Pages of the whole file that are dirty or being written back.</summary>
    public static ulong UnflushedPages(string path)
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
        return stat.Dirty + stat.Writeback;
    }
}
