using System.Buffers.Binary;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin;

/// <summary>
/// The dm-thin superblock (block 0; a metadata-snapshot copy lives at its held_root). Kept as the raw
/// block so fields we do not interpret (uuid bytes, padding) survive a rewrite unchanged.
/// </summary>
public sealed class ThinSuperblock
{
    public const ulong Magic = 27022010;
    public const uint NeedsCheckFlag = 1;
    public const uint KernelVersion = 2;
    public const uint MetadataBlockSizeSectors = 8;

    private readonly byte[] _raw;

    public ThinSuperblock(byte[] raw)
    {
        if (raw.Length != BlockChecksum.BlockSize)
            throw new ArgumentException("a superblock is one 4 KiB block", nameof(raw));
        _raw = raw;
    }

    public static ThinSuperblock CreateEmpty() => new(new byte[BlockChecksum.BlockSize]) { MagicField = Magic };

    public byte[] Raw => _raw;
    public ThinSuperblock Clone() => new((byte[])_raw.Clone());

    public uint Flags { get => U32(4); set => SetU32(4, value); }
    public bool NeedsCheck { get => (Flags & NeedsCheckFlag) != 0; set => Flags = value ? Flags | NeedsCheckFlag : Flags & ~NeedsCheckFlag; }
    public ulong BlockNr => U64(8);
    public ReadOnlySpan<byte> Uuid => _raw.AsSpan(16, 16);
    public void SetUuid(ReadOnlySpan<byte> bytes)
    {
        var u = _raw.AsSpan(16, 16);
        u.Clear();
        bytes[..Math.Min(16, bytes.Length)].CopyTo(u);
    }
    public ulong MagicField { get => U64(32); set => SetU64(32, value); }
    public uint Version { get => U32(40); set => SetU32(40, value); }
    public uint Time { get => U32(44); set => SetU32(44, value); }
    public ulong TransactionId { get => U64(48); set => SetU64(48, value); }
    public ulong HeldRoot { get => U64(56); set => SetU64(56, value); }
    public SpaceMapRoot DataSpaceMapRoot { get => SpaceMapRoot.Read(_raw.AsSpan(64)); set => value.Write(_raw.AsSpan(64)); }
    public SpaceMapRoot MetadataSpaceMapRoot { get => SpaceMapRoot.Read(_raw.AsSpan(192)); set => value.Write(_raw.AsSpan(192)); }
    public ulong DataMappingRoot { get => U64(320); set => SetU64(320, value); }
    public ulong DeviceDetailsRoot { get => U64(328); set => SetU64(328, value); }
    public uint DataBlockSize { get => U32(336); set => SetU32(336, value); }
    public uint MetadataBlockSize { get => U32(340); set => SetU32(340, value); }
    public ulong MetadataNrBlocks { get => U64(344); set => SetU64(344, value); }
    public uint CompatFlags => U32(352);
    public uint CompatRoFlags => U32(356);
    public uint IncompatFlags => U32(360);

    /// <summary>Clears both space-map root fields (a metadata-snapshot copy keeps only its tree roots).</summary>
    public void ClearSpaceMapRoots() => _raw.AsSpan(64, 2 * SpaceMapRoot.FieldSize).Clear();

    private uint U32(int o) => BinaryPrimitives.ReadUInt32LittleEndian(_raw.AsSpan(o));
    private ulong U64(int o) => BinaryPrimitives.ReadUInt64LittleEndian(_raw.AsSpan(o));
    private void SetU32(int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(_raw.AsSpan(o), v);
    private void SetU64(int o, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(_raw.AsSpan(o), v);
}
