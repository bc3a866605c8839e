using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.PersistentData;

/// <summary>
/// The size of an open file or block device. A block device's fstat size is 0 (what .NET reports as
/// its length), so a kernel pool's metadata device (/dev/mapper/vg-pool_tmeta) is measured with
/// lseek to its end instead; reads use pread, so moving the file offset changes nothing else.
/// </summary>
public static partial class DeviceLength
{
    private const int SeekEnd = 2;

    [LibraryImport("libc", SetLastError = true)]
    private static partial long lseek(int fd, long offset, int whence);

    /// <summary>Bytes in the file, or in the block device behind the handle.</summary>
    public static long Of(SafeFileHandle handle, string path)
    {
        long length = RandomAccess.GetLength(handle);
        if (length != 0)
            return length;
        long end = lseek((int)handle.DangerousGetHandle(), 0, SeekEnd);
        if (end < 0)
            throw new IOException($"cannot measure {path}: lseek to its end failed (errno {Marshal.GetLastPInvokeError()})");
        return end;
    }
}
