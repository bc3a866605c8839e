using System.Buffers.Binary;
using BackupAppliance.Core;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Decodes and checks frames written by <see cref="FrameEncoder"/>. Anything wrong is a
/// <see cref="WireFormatException"/> whose code is the error reply to send:
/// Oversized (frame larger than <see cref="WireProtocol.MaxFrameBytes"/>), UnsupportedVersion (v is 0
/// or newer than <see cref="WireProtocol.Version"/>; a newer frame is refused before its checksum is
/// judged, since a newer version may frame differently), Truncated (the bytes end inside a value),
/// ChecksumMismatch, UnknownMessageType, Malformed (everything else, including a message that breaks
/// its rules). Decoded messages borrow payload and hash bytes from <c>frame</c>.
/// </summary>
public static class FrameDecoder
{
    public static WireFrame Decode(ReadOnlyMemory<byte> frame)
    {
        var span = frame.Span;
        if (span.Length > WireProtocol.MaxFrameBytes)
            throw new WireFormatException(WireErrorCode.Oversized, $"frame of {span.Length} bytes is larger than {WireProtocol.MaxFrameBytes}", 0);

        uint? version = PeekVersion(span);
        if (version is { } v && (v < WireProtocol.OldestVersion || v > WireProtocol.Version))
            throw new WireFormatException(WireErrorCode.UnsupportedVersion,
                $"message version {v} is not supported: this peer speaks {WireProtocol.VersionsSpoken}", 0);
        CheckTrailer(span);

        var r = new MessagePackReader(span, WireProtocol.FrameLimits);
        int entries = r.ReadMapHeader();
        if (entries < FrameEncoder.EnvelopeEntries)
            throw new WireFormatException(WireErrorCode.Malformed, $"frame map has {entries} entries; v, t, seq and crc need at least {FrameEncoder.EnvelopeEntries}", 0);
        ExpectKey(ref r, "v"u8, "v", "first");
        uint version1 = r.ReadUInt32();
        ExpectKey(ref r, "t"u8, "t", "second");
        int typeAt = r.Consumed;
        var typeName = r.ReadStringUtf8();
        if (!MessageTypeNames.TryParse(typeName, out var type))
            throw new WireFormatException(WireErrorCode.UnknownMessageType,
                $"unknown message type '{System.Text.Encoding.UTF8.GetString(typeName)}' in a version {version1} frame", typeAt);
        ExpectKey(ref r, "seq"u8, "seq", "third");
        ulong sequence = r.ReadUInt64();

        int fields = entries - FrameEncoder.EnvelopeEntries;
        int bodyAt = r.Consumed;
        ReplicationMessage message = type switch
        {
            MessageType.BackupOffer => BackupOffer.Read(ref r, fields),
            MessageType.BackupBegin => BackupBegin.Read(ref r, fields),
            MessageType.DataFrame => DataFrame.Read(ref r, fields, frame),
            MessageType.Credit => Credit.Read(ref r, fields),
            MessageType.Ack => Ack.Read(ref r, fields),
            MessageType.Commit => Commit.Read(ref r, fields),
            MessageType.CommitAck => CommitAck.Read(ref r, fields),
            MessageType.Resume => Resume.Read(ref r, fields),
            _ => ErrorReply.Read(ref r, fields),
        };

        int crcKeyAt = r.Consumed;
        ExpectKey(ref r, "crc"u8, "crc", "last");
        if (r.Consumed != span.Length - FrameEncoder.TrailerBytes)
            throw new WireFormatException(WireErrorCode.Malformed,
                $"the crc entry must be the frame's last 5 bytes, but {span.Length - r.Consumed} bytes follow its key", crcKeyAt);
        if (message.FindProblem() is { } problem)
            throw new WireFormatException(problem.Code, $"{MessageTypeNames.Of(type)} message is invalid: {problem.Text}", bodyAt);
        return new WireFrame(version1, sequence, message);
    }

    /// <summary>
    /// The <c>seq</c> of a frame that starts like one (a map whose first three entries are v, t and
    /// seq), however damaged the rest; null otherwise. For naming a refused frame in an error reply.
    /// </summary>
    public static ulong? PeekSequence(ReadOnlySpan<byte> span)
    {
        try
        {
            var r = new MessagePackReader(span, WireProtocol.FrameLimits);
            r.ReadMapHeader();
            if (!r.ReadStringUtf8().SequenceEqual("v"u8))
                return null;
            r.Skip();
            if (!r.ReadStringUtf8().SequenceEqual("t"u8))
                return null;
            r.Skip();
            return r.ReadStringUtf8().SequenceEqual("seq"u8) ? r.ReadUInt64() : null;
        }
        catch (WireFormatException)
        {
            return null;
        }
    }

    /// <summary>The version if the frame starts like one (a map whose first entry is "v": uint32); otherwise null.</summary>
    private static uint? PeekVersion(ReadOnlySpan<byte> span)
    {
        try
        {
            var r = new MessagePackReader(span, WireProtocol.FrameLimits);
            r.ReadMapHeader();
            return r.ReadStringUtf8().SequenceEqual("v"u8) ? r.ReadUInt32() : null;
        }
        catch (WireFormatException)
        {
            return null;
        }
    }

    private static void CheckTrailer(ReadOnlySpan<byte> span)
    {
        int trailerAt = span.Length - FrameEncoder.TrailerBytes;
        if (trailerAt >= 1 && span[trailerAt] == MessagePackCode.UInt32)
        {
            uint expected = BinaryPrimitives.ReadUInt32BigEndian(span[(trailerAt + 1)..]);
            uint actual = Crc32C.Compute(span[..trailerAt]);
            if (expected == actual)
                return;
            // A frame cut short may still end in 0xce by chance: tell truncation apart first.
            ThrowIfTruncated(span);
            throw new WireFormatException(WireErrorCode.ChecksumMismatch,
                $"crc32c of the frame's first {trailerAt} bytes is 0x{actual:x8}, the frame says 0x{expected:x8}", trailerAt);
        }
        ThrowIfTruncated(span);
        throw new WireFormatException(WireErrorCode.ChecksumMismatch, "frame does not end in a 5-byte uint32 crc32c", Math.Max(trailerAt, 0));
    }

    private static void ThrowIfTruncated(ReadOnlySpan<byte> span)
    {
        var r = new MessagePackReader(span, WireProtocol.FrameLimits);
        try
        {
            r.Skip();
        }
        catch (WireFormatException e) when (e.Code == WireErrorCode.Truncated)
        {
            throw new WireFormatException(WireErrorCode.Truncated, $"frame of {span.Length} bytes is cut short: {e.What}", e.Offset);
        }
        catch (WireFormatException)
        {
            // Malformed as well as corrupt: the checksum is the clearer diagnosis.
        }
    }

    private static void ExpectKey(ref MessagePackReader r, ReadOnlySpan<byte> key, string name, string place)
    {
        int at = r.Consumed;
        if (!r.ReadStringUtf8().SequenceEqual(key))
            throw new WireFormatException(WireErrorCode.Malformed, $"the frame's {place} key must be '{name}'", at);
    }
}
