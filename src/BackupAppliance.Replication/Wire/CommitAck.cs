using static BackupAppliance.Replication.Wire.MessageFields;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Receiver → agent: stream <see cref="Stream"/> is published as backup point <see cref="Point"/>,
/// whose image has digest <see cref="ImageDigest"/>. Only now may the agent release its snapshot
/// (it becomes the base of the next incremental offer).
/// </summary>
public sealed record CommitAck(ulong Stream, string Point, byte[] ImageDigest) : ReplicationMessage
{
    public override MessageType Type => MessageType.CommitAck;

    public override WireProblem? FindProblem() =>
        MessageRules.Stream(Stream) ?? MessageRules.Text(Point, "point") ?? MessageRules.Digest(ImageDigest, "image digest");

    internal override int FieldCount => 3;

    internal override void WriteFields(ref MessagePackWriter w)
    {
        Field(ref w, "stream"u8, Stream);
        Field(ref w, "point"u8, Point);
        BinaryField(ref w, "digest"u8, ImageDigest);
    }

    internal static CommitAck Read(ref MessagePackReader r, int fields)
    {
        const MessageType T = MessageType.CommitAck;
        ulong? stream = null;
        string? point = null;
        byte[]? digest = null;
        for (int i = 0; i < fields; i++)
        {
            int at = r.Consumed;
            var key = r.ReadStringUtf8();
            if (key.SequenceEqual("stream"u8)) stream = Unique(stream, r.ReadUInt64(), T, "stream", at);
            else if (key.SequenceEqual("point"u8)) point = Unique(point, r.ReadString(), T, "point", at);
            else if (key.SequenceEqual("digest"u8)) digest = Unique(digest, r.ReadBinary().ToArray(), T, "digest", at);
            else SkipUnknown(ref r, key, T, at);
        }
        int end = r.Consumed;
        return new CommitAck(Need(stream, T, "stream", end), Need(point, T, "point", end), Need(digest, T, "digest", end));
    }
}
