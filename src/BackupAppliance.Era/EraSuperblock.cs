using System.Buffers.Binary;
using BackupAppliance.Core;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Era;

/// <summary>
/// The dm-era superblock (block 0; a metadata-snapshot copy lives at metadata_snap). Kept as the raw
/// block so bytes we do not interpret survive a rewrite. Layout: csum, flags, blocknr, uuid[16],
/// magic, version, metadata space map root[128], data_block_size, metadata_block_size, nr_blocks,
/// current_era, current_writeset {nr_bits, root}, writeset_tree_root, era_array_root, metadata_snap.
/// </summary>
public sealed class EraSuperblock
{
    public const ulong Magic = 2126579579;
    public const uint Version = 1;
    public const uint MetadataBlockSizeSectors = 8;

    private readonly byte[] _raw;

    public EraSuperblock(byte[] raw)
    {
        if (raw.Length != BlockChecksum.BlockSize)
            throw new ArgumentException("a superblock is one 4 KiB block", nameof(raw));
        _raw = raw;
    }

    /// <summary>A zeroed superblock with the constant fields of a fresh format.</summary>
    public static EraSuperblock CreateEmpty() => new(new byte[BlockChecksum.BlockSize])
    {
        MagicField = Magic,
        VersionField = Version,
        MetadataBlockSize = MetadataBlockSizeSectors,
    };

    public byte[] Raw => _raw;
    public EraSuperblock Clone() => new((byte[])_raw.Clone());

    public uint Flags => U32(4);
    public ulong BlockNr => U64(8);
    public ReadOnlySpan<byte> Uuid => _raw.AsSpan(16, 16);

    /// <summary>Copies up to 16 bytes into the uuid field (era_restore copies the XML uuid string's bytes).</summary>
    public void SetUuid(ReadOnlySpan<byte> bytes)
    {
        var u = _raw.AsSpan(16, 16);
        u.Clear();
        bytes[..Math.Min(16, bytes.Length)].CopyTo(u);
    }

    /// <summary>
    /// The uuid as the tools print it: the bytes from offset 16 up to the first zero, read as a C string
    /// (a 16-byte uuid with no terminator runs on into the magic, as in era_dump 0.9.0).
    /// </summary>
    public string UuidText
    {
        get
        {
            var rest = _raw.AsSpan(16);
            int end = rest.IndexOf((byte)0);
            return System.Text.Encoding.Latin1.GetString(end < 0 ? rest : rest[..end]);
        }
    }
    public ulong MagicField { get => U64(32); set => SetU64(32, value); }
    public uint VersionField { get => U32(40); set => SetU32(40, value); }
    public SpaceMapRoot MetadataSpaceMapRoot { get => SpaceMapRoot.Read(_raw.AsSpan(44)); set => value.Write(_raw.AsSpan(44)); }
    public uint DataBlockSize { get => U32(172); set => SetU32(172, value); }
    public uint MetadataBlockSize { get => U32(176); set => SetU32(176, value); }
    public uint NrBlocks { get => U32(180); set => SetU32(180, value); }
    public uint CurrentEra { get => U32(184); set => SetU32(184, value); }
    public uint CurrentWritesetBits { get => U32(188); set => SetU32(188, value); }
    public ulong CurrentWritesetRoot { get => U64(192); set => SetU64(192, value); }
    public ulong WritesetTreeRoot { get => U64(200); set => SetU64(200, value); }
    public ulong EraArrayRoot { get => U64(208); set => SetU64(208, value); }
    public ulong MetadataSnap { get => U64(216); set => SetU64(216, value); }

    /// <summary>
    /// What the tools' superblock validator checks: the checksum only (not blocknr, magic or version),
    /// with their message.
    /// </summary>
    public static EraSuperblock ReadChecksummed(byte[] raw)
    {
        uint want = BlockChecksum.Compute(raw, BlockKinds.Salt(BlockKind.EraSuperblock));
        if (BlockChecksum.Stored(raw) != want)
            throw new CorruptMetadataException(0, "bad checksum in superblock");
        return new EraSuperblock(raw);
    }

    /// <summary>
    /// Reads and checks a superblock (or a snapshot copy at <paramref name="location"/>): checksum and
    /// self-location, magic, version 1, metadata block size 8, the two tree roots present and distinct.
    /// </summary>
    public static EraSuperblock Validate(byte[] raw, ulong location)
    {
        BlockChecksum.Validate(raw, location, BlockKind.EraSuperblock);
        var sb = new EraSuperblock(raw);
        if (sb.MagicField != Magic)
            throw new CorruptMetadataException(location, $"era superblock magic is {sb.MagicField}, expected {Magic}");
        if (sb.VersionField != Version)
            throw new CorruptMetadataException(location, $"era superblock version is {sb.VersionField}, expected {Version}");
        if (sb.MetadataBlockSize != MetadataBlockSizeSectors)
            throw new CorruptMetadataException(location, $"era superblock metadata_block_size is {sb.MetadataBlockSize} sectors, expected {MetadataBlockSizeSectors}");
        if (sb.WritesetTreeRoot == 0 || sb.EraArrayRoot == 0 || sb.WritesetTreeRoot == sb.EraArrayRoot)
            throw new CorruptMetadataException(location, $"era superblock has writeset_tree_root {sb.WritesetTreeRoot} and era_array_root {sb.EraArrayRoot} (both must be set and differ)");
        return sb;
    }

    private uint U32(int o) => BinaryPrimitives.ReadUInt32LittleEndian(_raw.AsSpan(o));
    private ulong U64(int o) => BinaryPrimitives.ReadUInt64LittleEndian(_raw.AsSpan(o));
    private void SetU32(int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(_raw.AsSpan(o), v);
    private void SetU64(int o, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(_raw.AsSpan(o), v);
}
