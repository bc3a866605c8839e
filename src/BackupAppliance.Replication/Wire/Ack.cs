using static BackupAppliance.Replication.Wire.MessageFields;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Receiver → agent: every data frame of <see cref="Stream"/> up to <see cref="DurableSequence"/> is
/// durable, which covers the image below offset <see cref="Position"/>. Absolute, so a repeated or
/// reordered ack is harmless; it is where a resume starts.
/// </summary>
public sealed record Ack(ulong Stream, ulong DurableSequence, long Position) : ReplicationMessage
{
    public override MessageType Type => MessageType.Ack;

    public override WireProblem? FindProblem() =>
        MessageRules.Stream(Stream) ?? (Position < 0 ? MessageRules.Bad($"position {Position} is negative") : null);

    internal override int FieldCount => 3;

    internal override void WriteFields(ref MessagePackWriter w)
    {
        Field(ref w, "stream"u8, Stream);
        Field(ref w, "durable"u8, DurableSequence);
        Field(ref w, "pos"u8, Position);
    }

    internal static Ack Read(ref MessagePackReader r, int fields)
    {
        const MessageType T = MessageType.Ack;
        ulong? stream = null, durable = null;
        long? pos = null;
        for (int i = 0; i < fields; i++)
        {
            int at = r.Consumed;
            var key = r.ReadStringUtf8();
            if (key.SequenceEqual("stream"u8)) stream = Unique(stream, r.ReadUInt64(), T, "stream", at);
            else if (key.SequenceEqual("durable"u8)) durable = Unique(durable, r.ReadUInt64(), T, "durable", at);
            else if (key.SequenceEqual("pos"u8)) pos = Unique(pos, r.ReadInt64(), T, "pos", at);
            else SkipUnknown(ref r, key, T, at);
        }
        int end = r.Consumed;
        return new Ack(Need(stream, T, "stream", end), Need(durable, T, "durable", end), Need(pos, T, "pos", end));
    }
}
