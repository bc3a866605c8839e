using System.Text;

namespace BackupAppliance.Replication.Wire;

/// <summary>The kinds of replication messages; each travels as its name in the frame's <c>t</c> field.</summary>
public enum MessageType
{
    /// <summary>"offer": agent proposes a backup of a volume.</summary>
    BackupOffer,
    /// <summary>"begin": receiver opens a new stream for the offer.</summary>
    BackupBegin,
    /// <summary>"data": a run of extents of the stream.</summary>
    DataFrame,
    /// <summary>"credit": receiver lets the agent send up to a sequence number.</summary>
    Credit,
    /// <summary>"ack": receiver reports what is durable.</summary>
    Ack,
    /// <summary>"commit": agent ends the stream with the image digest.</summary>
    Commit,
    /// <summary>"commit_ack": receiver published the backup point.</summary>
    CommitAck,
    /// <summary>"resume": receiver tells the agent where to continue a stream.</summary>
    Resume,
    /// <summary>"error": a refusal, with a <see cref="WireErrorCode"/>.</summary>
    Error,
}

/// <summary>Wire names of <see cref="MessageType"/>.</summary>
public static class MessageTypeNames
{
    public static ReadOnlySpan<byte> Utf8(MessageType type) => type switch
    {
        MessageType.BackupOffer => "offer"u8,
        MessageType.BackupBegin => "begin"u8,
        MessageType.DataFrame => "data"u8,
        MessageType.Credit => "credit"u8,
        MessageType.Ack => "ack"u8,
        MessageType.Commit => "commit"u8,
        MessageType.CommitAck => "commit_ack"u8,
        MessageType.Resume => "resume"u8,
        MessageType.Error => "error"u8,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not a message type"),
    };

    public static string Of(MessageType type) => Encoding.UTF8.GetString(Utf8(type));

    public static bool TryParse(ReadOnlySpan<byte> name, out MessageType type)
    {
        for (var candidate = MessageType.BackupOffer; candidate <= MessageType.Error; candidate++)
        {
            if (name.SequenceEqual(Utf8(candidate)))
            {
                type = candidate;
                return true;
            }
        }
        type = default;
        return false;
    }
}
