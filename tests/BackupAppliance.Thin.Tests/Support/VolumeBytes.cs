using BackupAppliance.Core;

namespace BackupAppliance.Thin.Tests.Support;

/// <summary>Seeded random bytes to write, and reading a range of a volume back.</summary>
public static class VolumeBytes
{
    public static byte[] Bytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    public static async Task<byte[]> Read(IBlockVolume v, long off, int len)
    {
        var b = new byte[len];
        await v.ReadAsync(off, b, default);
        return b;
    }
}
