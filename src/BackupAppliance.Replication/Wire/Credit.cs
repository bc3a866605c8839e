using static BackupAppliance.Replication.Wire.MessageFields;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Receiver → agent: data frames of <see cref="Stream"/> may be sent up to sequence number
/// <see cref="UpTo"/>. Absolute, never a delta, so a repeated or reordered credit is harmless:
/// the agent keeps the highest it has seen.
/// </summary>
public sealed record Credit(ulong Stream, ulong UpTo) : ReplicationMessage
{
    public override MessageType Type => MessageType.Credit;

    public override WireProblem? FindProblem() => MessageRules.Stream(Stream);

    internal override int FieldCount => 2;

    internal override void WriteFields(ref MessagePackWriter w)
    {
        Field(ref w, "stream"u8, Stream);
        Field(ref w, "upto"u8, UpTo);
    }

    internal static Credit Read(ref MessagePackReader r, int fields)
    {
        const MessageType T = MessageType.Credit;
        ulong? stream = null, upto = null;
        for (int i = 0; i < fields; i++)
        {
            int at = r.Consumed;
            var key = r.ReadStringUtf8();
            if (key.SequenceEqual("stream"u8)) stream = Unique(stream, r.ReadUInt64(), T, "stream", at);
            else if (key.SequenceEqual("upto"u8)) upto = Unique(upto, r.ReadUInt64(), T, "upto", at);
            else SkipUnknown(ref r, key, T, at);
        }
        int end = r.Consumed;
        return new Credit(Need(stream, T, "stream", end), Need(upto, T, "upto", end));
    }
}
