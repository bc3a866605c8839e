using System.Text;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// The shared steps of decoding a message's map: a field seen twice or missing is Malformed,
/// naming the message type, the field and the offset.
/// </summary>
internal static class MessageFields
{
    public static T Unique<T>(T? seen, T value, MessageType type, string field, int at) where T : struct =>
        seen is null ? value : throw Duplicate(type, field, at);

    public static T Unique<T>(T? seen, T value, MessageType type, string field, int at) where T : class =>
        seen is null ? value : throw Duplicate(type, field, at);

    public static bool UniqueFlag(bool seen, MessageType type, string field, int at) =>
        !seen ? true : throw Duplicate(type, field, at);

    public static T Need<T>(T? value, MessageType type, string field, int at) where T : struct =>
        value ?? throw Missing(type, field, at);

    public static T Need<T>(T? value, MessageType type, string field, int at) where T : class =>
        value ?? throw Missing(type, field, at);

    /// <summary>
    /// Passes over a field this version does not know (a later minor addition). A body field named
    /// like an envelope entry would make the map's keys repeat, and is refused.
    /// </summary>
    public static void SkipUnknown(ref MessagePackReader reader, ReadOnlySpan<byte> key, MessageType type, int at)
    {
        if (key.SequenceEqual("v"u8) || key.SequenceEqual("t"u8) || key.SequenceEqual("seq"u8) || key.SequenceEqual("crc"u8))
            throw Duplicate(type, Encoding.UTF8.GetString(key), at);
        reader.Skip();
    }

    /// <summary>A bin field as a slice of the frame (no copy).</summary>
    public static ReadOnlyMemory<byte> Borrow(ref MessagePackReader reader, ReadOnlyMemory<byte> frame)
    {
        var bytes = reader.ReadBinary();
        return frame.Slice(reader.Consumed - bytes.Length, bytes.Length);
    }

    /// <summary>A str or nil.</summary>
    public static string? OptionalString(ref MessagePackReader reader) => reader.TryReadNil() ? null : reader.ReadString();

    /// <summary>A uint64 or nil.</summary>
    public static ulong? OptionalUInt64(ref MessagePackReader reader) => reader.TryReadNil() ? null : reader.ReadUInt64();

    public static void Field(ref MessagePackWriter writer, ReadOnlySpan<byte> key, ulong value)
    {
        writer.WriteStringUtf8(key);
        writer.WriteUInt64(value);
    }

    public static void Field(ref MessagePackWriter writer, ReadOnlySpan<byte> key, long value)
    {
        writer.WriteStringUtf8(key);
        writer.WriteInt64(value);
    }

    public static void Field(ref MessagePackWriter writer, ReadOnlySpan<byte> key, string value)
    {
        writer.WriteStringUtf8(key);
        writer.WriteString(value);
    }

    public static void BinaryField(ref MessagePackWriter writer, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        writer.WriteStringUtf8(key);
        writer.WriteBinary(value);
    }

    /// <summary>A str, or nil for null.</summary>
    public static void OptionalField(ref MessagePackWriter writer, ReadOnlySpan<byte> key, string? value)
    {
        writer.WriteStringUtf8(key);
        if (value is null)
            writer.WriteNil();
        else
            writer.WriteString(value);
    }

    /// <summary>A uint64, or nil for null.</summary>
    public static void OptionalField(ref MessagePackWriter writer, ReadOnlySpan<byte> key, ulong? value)
    {
        writer.WriteStringUtf8(key);
        if (value is null)
            writer.WriteNil();
        else
            writer.WriteUInt64(value.Value);
    }

    private static WireFormatException Duplicate(MessageType type, string field, int at) =>
        new(WireErrorCode.Malformed, $"{MessageTypeNames.Of(type)} message has field '{field}' twice", at);

    private static WireFormatException Missing(MessageType type, string field, int at) =>
        new(WireErrorCode.Malformed, $"{MessageTypeNames.Of(type)} message lacks field '{field}'", at);
}

/// <summary>Rules shared by several messages; each returns a problem text or null.</summary>
internal static class MessageRules
{
    /// <summary>Agent and volume names are NATS subject tokens: letters, digits, '-' and '_'.</summary>
    public static WireProblem? Bad(string text) => new WireProblem(WireErrorCode.Malformed, text);

    public static WireProblem? TooBig(string text) => new WireProblem(WireErrorCode.Oversized, text);

    public static WireProblem? Name(string value, string field)
    {
        if (value.Length is 0 or > WireProtocol.MaxNameLength)
            return Bad($"{field} must be 1 to {WireProtocol.MaxNameLength} characters, not {value.Length}");
        foreach (char c in value)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
                return Bad($"{field} '{value}' has '{c}': only ASCII letters, digits, '-' and '_' are allowed");
        }
        return null;
    }

    public static WireProblem? Text(string? value, string field, bool allowEmpty = false)
    {
        if (value is null)
            return null;
        if (!allowEmpty && value.Length == 0)
            return Bad($"{field} is empty");
        int bytes = Encoding.UTF8.GetByteCount(value);
        return bytes > WireProtocol.MaxTextBytes ? TooBig($"{field} is {bytes} bytes of UTF-8, more than {WireProtocol.MaxTextBytes}") : null;
    }

    public static WireProblem? Stream(ulong stream) => stream == 0 ? Bad("stream 0 is not a stream id") : null;

    public static WireProblem? Digest(ReadOnlySpan<byte> digest, string field) =>
        digest.Length == WireProtocol.DigestSize ? null : Bad($"{field} is {digest.Length} bytes, not {WireProtocol.DigestSize}");
}
