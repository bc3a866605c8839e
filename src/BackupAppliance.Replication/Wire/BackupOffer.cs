using static BackupAppliance.Replication.Wire.MessageFields;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Agent → receiver: "I have snapshot <see cref="TargetSnapshot"/> of <see cref="Volume"/> to back
/// up, as changes since backup point <see cref="BasePoint"/> (null: a full backup)".
/// The receiver answers <see cref="BackupBegin"/>, <see cref="Resume"/> (an unfinished stream of
/// the same offer exists) or <see cref="ErrorReply"/>.
/// </summary>
/// <param name="Size">Image size in bytes.</param>
/// <param name="BlockSize">Replication block: the unit of extents' alignment and of block hashes.</param>
public sealed record BackupOffer(string Agent, string Volume, string? BasePoint, string TargetSnapshot, long Size, int BlockSize)
    : ReplicationMessage
{
    public override MessageType Type => MessageType.BackupOffer;

    public override WireProblem? FindProblem() =>
        MessageRules.Name(Agent, "agent")
        ?? MessageRules.Name(Volume, "volume")
        ?? MessageRules.Text(BasePoint, "base point")
        ?? MessageRules.Text(TargetSnapshot, "target snapshot")
        ?? (Size <= 0 ? MessageRules.Bad($"image size {Size} is not positive") : null)
        ?? (BlockSize < WireProtocol.MinBlockSize || BlockSize > WireProtocol.MaxBlockSize || (BlockSize & (BlockSize - 1)) != 0
            ? MessageRules.Bad($"block size {BlockSize} is not a power of two from {WireProtocol.MinBlockSize} to {WireProtocol.MaxBlockSize}")
            : null);

    internal override int FieldCount => 6;

    internal override void WriteFields(ref MessagePackWriter w)
    {
        Field(ref w, "agent"u8, Agent);
        Field(ref w, "volume"u8, Volume);
        OptionalField(ref w, "base"u8, BasePoint);
        Field(ref w, "target"u8, TargetSnapshot);
        Field(ref w, "size"u8, Size);
        Field(ref w, "block"u8, BlockSize);
    }

    internal static BackupOffer Read(ref MessagePackReader r, int fields)
    {
        const MessageType T = MessageType.BackupOffer;
        string? agent = null, volume = null, basePoint = null, target = null;
        bool hasBase = false;
        long? size = null;
        int? block = null;
        for (int i = 0; i < fields; i++)
        {
            int at = r.Consumed;
            var key = r.ReadStringUtf8();
            if (key.SequenceEqual("agent"u8)) agent = Unique(agent, r.ReadString(), T, "agent", at);
            else if (key.SequenceEqual("volume"u8)) volume = Unique(volume, r.ReadString(), T, "volume", at);
            else if (key.SequenceEqual("base"u8)) { hasBase = UniqueFlag(hasBase, T, "base", at); basePoint = OptionalString(ref r); }
            else if (key.SequenceEqual("target"u8)) target = Unique(target, r.ReadString(), T, "target", at);
            else if (key.SequenceEqual("size"u8)) size = Unique(size, r.ReadInt64(), T, "size", at);
            else if (key.SequenceEqual("block"u8)) block = Unique(block, r.ReadInt32(), T, "block", at);
            else SkipUnknown(ref r, key, T, at);
        }
        int end = r.Consumed;
        return new BackupOffer(Need(agent, T, "agent", end), Need(volume, T, "volume", end), basePoint,
            Need(target, T, "target", end), Need(size, T, "size", end), Need(block, T, "block", end));
    }
}
