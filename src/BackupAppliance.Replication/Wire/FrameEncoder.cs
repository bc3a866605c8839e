using BackupAppliance.Core;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Encodes messages as frames into one reusable pooled buffer. A frame is a MessagePack map:
/// <c>{"v": version, "t": type name, "seq": n, …message fields…, "crc": crc32c}</c>, where the crc
/// is always the 5-byte uint32 form (0xce + 4 bytes) so it is the frame's last 5 bytes, and covers
/// every byte before them. Not thread-safe: one encoder per sending loop.
/// </summary>
public sealed class FrameEncoder : IDisposable
{
    /// <summary>Entries of a frame's map beside the message's fields: v, t, seq, crc.</summary>
    internal const int EnvelopeEntries = 4;

    /// <summary>Bytes of the crc trailer: 0xce and a big-endian uint32.</summary>
    internal const int TrailerBytes = 5;

    private readonly PooledBufferWriter _buffer = new(64 * 1024, WireProtocol.MaxFrameBytes + 64 * 1024);

    /// <summary>
    /// The frame for <paramref name="message"/>; the memory stays valid until the next call.
    /// An invalid message or one whose frame would exceed <see cref="WireProtocol.MaxFrameBytes"/>
    /// is an <see cref="ArgumentException"/> and nothing is returned.
    /// </summary>
    public ReadOnlyMemory<byte> Encode(ulong sequence, ReplicationMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message.FindProblem() is { } problem)
            throw new ArgumentException($"{MessageTypeNames.Of(message.Type)} message is invalid: {problem.Text}", nameof(message));
        _buffer.Reset();
        var w = new MessagePackWriter(_buffer);
        w.WriteMapHeader(EnvelopeEntries + message.FieldCount);
        w.WriteStringUtf8("v"u8);
        w.WriteUInt64(WireProtocol.Version);
        w.WriteStringUtf8("t"u8);
        w.WriteStringUtf8(MessageTypeNames.Utf8(message.Type));
        w.WriteStringUtf8("seq"u8);
        w.WriteUInt64(sequence);
        message.WriteFields(ref w);
        w.WriteStringUtf8("crc"u8);
        w.WriteUInt32Full(Crc32C.Compute(_buffer.WrittenSpan));
        if (_buffer.WrittenCount > WireProtocol.MaxFrameBytes)
        {
            int size = _buffer.WrittenCount;
            _buffer.Reset();
            throw new ArgumentException($"{MessageTypeNames.Of(message.Type)} frame would be {size} bytes, more than {WireProtocol.MaxFrameBytes}", nameof(message));
        }
        return _buffer.WrittenMemory;
    }

    public void Dispose() => _buffer.Dispose();
}
