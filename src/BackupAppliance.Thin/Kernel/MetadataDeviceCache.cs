using System.Runtime.InteropServices;

namespace BackupAppliance.Thin.Kernel;

/// <summary>
/// Drops the page cache of a kernel pool's metadata device before it is read. The pool writes its
/// metadata with bios below the page cache (dm-bufio), and it keeps the device open, so pages cached
/// by an earlier reader are never invalidated and would be served stale. After the drop every block
/// is read from disk; the blocks of a held metadata snapshot do not change until it is released.
/// (thin-provisioning-tools avoid the cache with O_DIRECT for the same reason.)
/// </summary>
public static partial class MetadataDeviceCache
{
    private const int PosixFadvDontNeed = 4;

    [LibraryImport("libc")]
    private static partial int posix_fadvise(int fd, long offset, long length, int advice);

    public static void Drop(string device)
    {
        using var handle = File.OpenHandle(device, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        int errno = posix_fadvise((int)handle.DangerousGetHandle(), 0, 0, PosixFadvDontNeed);
        if (errno != 0)
            throw new IOException($"cannot drop the cached pages of {device} (posix_fadvise errno {errno}); its metadata might be read stale");
    }
}
