namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Why a frame or a request was refused. The first group is what decoding a frame can find
/// (<see cref="WireFormatException"/>); the rest is what the receiver finds when it acts on a valid
/// message. The numbers travel in <see cref="ErrorReply.Code"/>; never renumber, only add.
/// </summary>
public enum WireErrorCode : uint
{
    /// <summary>Not valid MessagePack, or not the shape the message type requires (missing, duplicate or mistyped field, bad value).</summary>
    Malformed = 1,
    /// <summary>The frame ends in the middle of a value.</summary>
    Truncated = 2,
    /// <summary>The frame, a field or a collection is larger than the protocol allows.</summary>
    Oversized = 3,
    /// <summary>The crc32c trailer does not match the frame's bytes.</summary>
    ChecksumMismatch = 4,
    /// <summary>The frame's version is newer than this peer speaks (or zero).</summary>
    UnsupportedVersion = 5,
    /// <summary>The frame's type is not one this version knows.</summary>
    UnknownMessageType = 6,

    /// <summary>The volume named by the subject or offer is not one the receiver keeps replicas of.</summary>
    UnknownVolume = 20,
    /// <summary>The stream id is not an open stream of this volume.</summary>
    UnknownStream = 21,
    /// <summary>A data frame skipped ahead of the next expected sequence number.</summary>
    OutOfSequence = 22,
    /// <summary>A data frame beyond the credit granted.</summary>
    CreditExceeded = 23,
    /// <summary>A payload is not one zstd frame of exactly the extent's length.</summary>
    PayloadCorrupt = 24,
    /// <summary>A block's data does not match its hash.</summary>
    BlockHashMismatch = 25,
    /// <summary>The image digest at commit does not match the receiver's.</summary>
    DigestMismatch = 26,
    /// <summary>The receiver does not hold the base point an incremental offer builds on.</summary>
    BaseMismatch = 27,
    /// <summary>Another stream of this volume is running.</summary>
    Busy = 28,
    /// <summary>The receiver's pool has no space for the data.</summary>
    NoSpace = 29,
    /// <summary>Anything else that went wrong on the receiver; the message says what.</summary>
    Internal = 30,
}
