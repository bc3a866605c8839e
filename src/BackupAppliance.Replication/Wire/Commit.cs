using static BackupAppliance.Replication.Wire.MessageFields;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Agent → receiver: stream <see cref="Stream"/> is complete with data frame <see cref="LastSequence"/>
/// (0: no data frames); the whole target image has digest <see cref="ImageDigest"/> (see
/// <see cref="Integrity.ImageDigest"/>). The receiver makes everything durable, checks the digest,
/// publishes the backup point atomically and answers <see cref="CommitAck"/>. Repeating a commit
/// of a committed stream gets the same <see cref="CommitAck"/> again.
/// </summary>
public sealed record Commit(ulong Stream, ulong LastSequence, byte[] ImageDigest) : ReplicationMessage
{
    public override MessageType Type => MessageType.Commit;

    public override WireProblem? FindProblem() => MessageRules.Stream(Stream) ?? MessageRules.Digest(ImageDigest, "image digest");

    internal override int FieldCount => 3;

    internal override void WriteFields(ref MessagePackWriter w)
    {
        Field(ref w, "stream"u8, Stream);
        Field(ref w, "last"u8, LastSequence);
        BinaryField(ref w, "digest"u8, ImageDigest);
    }

    internal static Commit Read(ref MessagePackReader r, int fields)
    {
        const MessageType T = MessageType.Commit;
        ulong? stream = null, last = null;
        byte[]? digest = null;
        for (int i = 0; i < fields; i++)
        {
            int at = r.Consumed;
            var key = r.ReadStringUtf8();
            if (key.SequenceEqual("stream"u8)) stream = Unique(stream, r.ReadUInt64(), T, "stream", at);
            else if (key.SequenceEqual("last"u8)) last = Unique(last, r.ReadUInt64(), T, "last", at);
            else if (key.SequenceEqual("digest"u8)) digest = Unique(digest, r.ReadBinary().ToArray(), T, "digest", at);
            else SkipUnknown(ref r, key, T, at);
        }
        int end = r.Consumed;
        return new Commit(Need(stream, T, "stream", end), Need(last, T, "last", end), Need(digest, T, "digest", end));
    }
}
