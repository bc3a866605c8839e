using System.Runtime.InteropServices;

namespace BackupAppliance.Replication.Integrity;

/// <summary>
/// The one entry point of the system's libxxhash (Debian's libxxhash0, which apt itself depends on)
/// we use. The versioned name is bound on purpose: the unversioned libxxhash.so exists only where
/// the -dev package is installed.
/// </summary>
internal static unsafe partial class XxHashNative
{
    private const string Library = "libxxhash.so.0";

    /// <summary>XXH128_hash_t: the 128-bit hash as two 64-bit halves.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Hash128
    {
        public ulong Low64;
        public ulong High64;
    }

    [LibraryImport(Library)]
    public static partial Hash128 XXH3_128bits(byte* data, nuint length);
}
