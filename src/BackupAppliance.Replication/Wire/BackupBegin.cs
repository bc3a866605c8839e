using static BackupAppliance.Replication.Wire.MessageFields;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Receiver → agent: the offer is accepted as a new stream <see cref="Stream"/>; the agent may send
/// data frames with sequence numbers 1 to <see cref="CreditUpTo"/>.
/// </summary>
public sealed record BackupBegin(ulong Stream, ulong CreditUpTo) : ReplicationMessage
{
    public override MessageType Type => MessageType.BackupBegin;

    public override WireProblem? FindProblem() => MessageRules.Stream(Stream);

    internal override int FieldCount => 2;

    internal override void WriteFields(ref MessagePackWriter w)
    {
        Field(ref w, "stream"u8, Stream);
        Field(ref w, "credit"u8, CreditUpTo);
    }

    internal static BackupBegin Read(ref MessagePackReader r, int fields)
    {
        const MessageType T = MessageType.BackupBegin;
        ulong? stream = null, credit = null;
        for (int i = 0; i < fields; i++)
        {
            int at = r.Consumed;
            var key = r.ReadStringUtf8();
            if (key.SequenceEqual("stream"u8)) stream = Unique(stream, r.ReadUInt64(), T, "stream", at);
            else if (key.SequenceEqual("credit"u8)) credit = Unique(credit, r.ReadUInt64(), T, "credit", at);
            else SkipUnknown(ref r, key, T, at);
        }
        int end = r.Consumed;
        return new BackupBegin(Need(stream, T, "stream", end), Need(credit, T, "credit", end));
    }
}
