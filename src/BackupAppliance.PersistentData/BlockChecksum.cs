using System.Buffers.Binary;
using BackupAppliance.Core;

namespace BackupAppliance.PersistentData;

/// <summary>
/// dm_bm_checksum: crc32c over bytes 4..4095 (raw register, init ~0) XOR the block kind's salt,
/// stored little-endian at offset 0.
/// </summary>
public static class BlockChecksum
{
    public const int BlockSize = 4096;

    public static uint Compute(ReadOnlySpan<byte> block, uint salt) =>
        Crc32C.Update(0xFFFFFFFF, block[4..BlockSize]) ^ salt;

    public static uint Stored(ReadOnlySpan<byte> block) => BinaryPrimitives.ReadUInt32LittleEndian(block);

    /// <summary>Fills in the self-location and the checksum, as a kernel validator does before write-out.</summary>
    public static void Seal(Span<byte> block, ulong location, BlockKind kind)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(block[BlockKinds.BlockNrOffset(kind)..], location);
        BinaryPrimitives.WriteUInt32LittleEndian(block, Compute(block, BlockKinds.Salt(kind)));
    }

    /// <summary>Returns null when the block is valid for its kind and location, else what is wrong.</summary>
    public static string? Problem(ReadOnlySpan<byte> block, ulong location, BlockKind kind)
    {
        ulong nr = BinaryPrimitives.ReadUInt64LittleEndian(block[BlockKinds.BlockNrOffset(kind)..]);
        uint want = Compute(block, BlockKinds.Salt(kind));
        uint got = Stored(block);
        if (got != want)
            return $"bad checksum in {BlockKinds.Describe(kind)} (stored 0x{got:x8}, computed 0x{want:x8})";
        if (nr != location)
            return $"bad block nr in {BlockKinds.Describe(kind)} (says {nr}, lives at {location})";
        return null;
    }

    public static void Validate(ReadOnlySpan<byte> block, ulong location, BlockKind kind)
    {
        string? problem = Problem(block, location, kind);
        if (problem is not null)
            throw new CorruptMetadataException(location, problem);
    }
}
