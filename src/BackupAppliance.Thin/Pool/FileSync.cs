using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.Thin.Pool;

/// <summary>The few POSIX calls .NET does not wrap: fsync of a folder, punching holes.</summary>
public static partial class FileSync
{
    private const int ORdonly = 0, ODirectory = 0x10000;
    private const int FallocFlKeepSize = 0x01, FallocFlPunchHole = 0x02;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link(string existing, string newPath);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(nint fd, int mode, long offset, long length);

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
    public static bool PunchHole(SafeFileHandle file, long offset, long length)
    {
        bool added = false;
        file.DangerousAddRef(ref added);
        try
        {
            return fallocate(file.DangerousGetHandle(), FallocFlPunchHole | FallocFlKeepSize, offset, length) == 0;
        }
        finally
        {
            if (added)
                file.DangerousRelease();
        }
    }
}
