using static BackupAppliance.Replication.Wire.MessageFields;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Receiver → agent: a frame or request was refused and changed nothing. <see cref="About"/> is the
/// sequence number of the refused frame when it could be read; <see cref="Stream"/> is null when
/// the refusal concerns no open stream (a bad offer, an undecodable frame).
/// Codes this version does not know are kept as their number.
/// </summary>
public sealed record ErrorReply(WireErrorCode Code, string Message, ulong? Stream, ulong? About) : ReplicationMessage
{
    public override MessageType Type => MessageType.Error;

    public override WireProblem? FindProblem() =>
        (Code == 0 ? MessageRules.Bad("error code 0 is not an error") : null)
        ?? MessageRules.Text(Message, "error message", allowEmpty: true)
        ?? (Stream is { } s ? MessageRules.Stream(s) : null);

    internal override int FieldCount => 4;

    internal override void WriteFields(ref MessagePackWriter w)
    {
        Field(ref w, "code"u8, (ulong)Code);
        Field(ref w, "msg"u8, Message);
        OptionalField(ref w, "stream"u8, Stream);
        OptionalField(ref w, "about"u8, About);
    }

    internal static ErrorReply Read(ref MessagePackReader r, int fields)
    {
        const MessageType T = MessageType.Error;
        uint? code = null;
        string? message = null;
        ulong? stream = null, about = null;
        bool hasStream = false, hasAbout = false;
        for (int i = 0; i < fields; i++)
        {
            int at = r.Consumed;
            var key = r.ReadStringUtf8();
            if (key.SequenceEqual("code"u8)) code = Unique(code, r.ReadUInt32(), T, "code", at);
            else if (key.SequenceEqual("msg"u8)) message = Unique(message, r.ReadString(), T, "msg", at);
            else if (key.SequenceEqual("stream"u8)) { hasStream = UniqueFlag(hasStream, T, "stream", at); stream = OptionalUInt64(ref r); }
            else if (key.SequenceEqual("about"u8)) { hasAbout = UniqueFlag(hasAbout, T, "about", at); about = OptionalUInt64(ref r); }
            else SkipUnknown(ref r, key, T, at);
        }
        int end = r.Consumed;
        return new ErrorReply((WireErrorCode)Need(code, T, "code", end), Need(message, T, "msg", end), stream, about);
    }
}
