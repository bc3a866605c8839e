using System.Buffers.Binary;

namespace BackupAppliance.Thin;

/// <summary>disk_device_details: the 24-byte value of the device-details btree.</summary>
public readonly record struct DeviceDetails(ulong MappedBlocks, ulong TransactionId, uint CreationTime, uint SnapshottedTime)
{
    public const int Size = 24;

    public static DeviceDetails Read(ReadOnlySpan<byte> s) => new(
        BinaryPrimitives.ReadUInt64LittleEndian(s),
        BinaryPrimitives.ReadUInt64LittleEndian(s[8..]),
        BinaryPrimitives.ReadUInt32LittleEndian(s[16..]),
        BinaryPrimitives.ReadUInt32LittleEndian(s[20..]));

    public void Write(Span<byte> s)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(s, MappedBlocks);
        BinaryPrimitives.WriteUInt64LittleEndian(s[8..], TransactionId);
        BinaryPrimitives.WriteUInt32LittleEndian(s[16..], CreationTime);
        BinaryPrimitives.WriteUInt32LittleEndian(s[20..], SnapshottedTime);
    }
}
