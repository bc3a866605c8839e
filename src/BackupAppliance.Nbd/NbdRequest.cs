using System.Buffers.Binary;

namespace BackupAppliance.Nbd;

/// <summary>A transmission-phase request header as it came off the wire, not yet validated.</summary>
internal readonly record struct NbdRequest(uint Magic, ushort Flags, ushort Type, ulong Cookie, ulong Offset, uint Length)
{
    public static NbdRequest Parse(ReadOnlySpan<byte> header) => new(
        BinaryPrimitives.ReadUInt32BigEndian(header),
        BinaryPrimitives.ReadUInt16BigEndian(header[4..]),
        BinaryPrimitives.ReadUInt16BigEndian(header[6..]),
        BinaryPrimitives.ReadUInt64BigEndian(header[8..]),
        BinaryPrimitives.ReadUInt64BigEndian(header[16..]),
        BinaryPrimitives.ReadUInt32BigEndian(header[24..]));

    public bool Fua => (Flags & NbdConstants.CmdFlagFua) != 0;

    public bool HasFlag(ushort flag) => (Flags & flag) != 0;
}
