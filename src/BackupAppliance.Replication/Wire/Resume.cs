using static BackupAppliance.Replication.Wire.MessageFields;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Receiver → agent: continue stream <see cref="Stream"/> with data frame <see cref="AfterSequence"/> + 1,
/// sending extents from image offset <see cref="Position"/> on; frames up to <see cref="CreditUpTo"/>
/// may be sent. The answer to an offer whose stream was interrupted, and to a frame that arrived
/// out of sequence (the receiver lost what was not yet durable).
/// </summary>
public sealed record Resume(ulong Stream, ulong AfterSequence, long Position, ulong CreditUpTo) : ReplicationMessage
{
    public override MessageType Type => MessageType.Resume;

    public override WireProblem? FindProblem() =>
        MessageRules.Stream(Stream)
        ?? (Position < 0 ? MessageRules.Bad($"position {Position} is negative") : null)
        ?? (CreditUpTo < AfterSequence ? MessageRules.Bad($"credit {CreditUpTo} is below the resume point {AfterSequence}") : null);

    internal override int FieldCount => 4;

    internal override void WriteFields(ref MessagePackWriter w)
    {
        Field(ref w, "stream"u8, Stream);
        Field(ref w, "after"u8, AfterSequence);
        Field(ref w, "pos"u8, Position);
        Field(ref w, "credit"u8, CreditUpTo);
    }

    internal static Resume Read(ref MessagePackReader r, int fields)
    {
        const MessageType T = MessageType.Resume;
        ulong? stream = null, after = null, credit = null;
        long? pos = null;
        for (int i = 0; i < fields; i++)
        {
            int at = r.Consumed;
            var key = r.ReadStringUtf8();
            if (key.SequenceEqual("stream"u8)) stream = Unique(stream, r.ReadUInt64(), T, "stream", at);
            else if (key.SequenceEqual("after"u8)) after = Unique(after, r.ReadUInt64(), T, "after", at);
            else if (key.SequenceEqual("pos"u8)) pos = Unique(pos, r.ReadInt64(), T, "pos", at);
            else if (key.SequenceEqual("credit"u8)) credit = Unique(credit, r.ReadUInt64(), T, "credit", at);
            else SkipUnknown(ref r, key, T, at);
        }
        int end = r.Consumed;
        return new Resume(Need(stream, T, "stream", end), Need(after, T, "after", end), Need(pos, T, "pos", end), Need(credit, T, "credit", end));
    }
}
