using System.Buffers.Binary;
using System.Runtime.Intrinsics.X86;

namespace BackupAppliance.Core;

/// <summary>
/// CRC-32C (Castagnoli). <see cref="Update"/> works on the raw CRC register (no final inversion),
/// which is what the kernel's crc32c() returns and what dm persistent-data checksums use.
/// </summary>
public static class Crc32C
{
    private const uint Polynomial = 0x82F63B78;
    private static readonly uint[] Table = BuildTable();

    /// <summary>Standard CRC-32C (init ~0, final ~). crc32c("123456789") = 0xE3069283.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => ~Update(0xFFFFFFFF, data);

    /// <summary>Advances the raw register over <paramref name="data"/>.</summary>
    public static uint Update(uint crc, ReadOnlySpan<byte> data)
    {
        if (Sse42.X64.IsSupported)
        {
            ulong c = crc;
            int i = 0;
            for (; i + 8 <= data.Length; i += 8)
                c = Sse42.X64.Crc32(c, BinaryPrimitives.ReadUInt64LittleEndian(data[i..]));
            uint r = (uint)c;
            for (; i < data.Length; i++)
                r = Sse42.Crc32(r, data[i]);
            return r;
        }
        return UpdateSoftware(crc, data);
    }

    /// <summary>Table-driven fallback; also used by tests to cross-check the hardware path.</summary>
    public static uint UpdateSoftware(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data)
            crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    private static uint[] BuildTable()
    {
        var t = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++)
                c = (c & 1) != 0 ? (c >> 1) ^ Polynomial : c >> 1;
            t[i] = c;
        }
        return t;
    }
}
