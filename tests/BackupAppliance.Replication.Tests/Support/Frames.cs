using System.Security.Cryptography;
using BackupAppliance.Core;
using BackupAppliance.Replication.Compression;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Tests.Support;

/// <summary>Sample messages of every type, frames built by hand, and a text form to compare messages by.</summary>
public static class Frames
{
    public const int BlockSize = 4096;

    /// <summary>One message of each type, with values at interesting widths.</summary>
    public static List<ReplicationMessage> OneOfEach(Random rng) =>
    [
        new BackupOffer("agent-01", "vol_A", null, "snap-2026-03-14T02:00Z", 10L << 30, 65536),
        new BackupOffer("a", "v", "point-17", "snap é 💾", 4096, 4096),
        new BackupBegin(1, 64),
        Data(rng, stream: ulong.MaxValue, blocks: 8),
        new DataFrame(3, [WireExtent.Zero(0, 1L << 40), WireExtent.Discard((1L << 40) + 4096, 1L << 20)]),
        new Credit(7, uint.MaxValue + 1UL),
        new Ack(7, 12, 5L << 32),
        new Commit(7, 0, SHA256.HashData("image"u8)),
        new CommitAck(7, "point-18", SHA256.HashData("image"u8)),
        new Resume(9, 41, 1L << 33, 105),
        new ErrorReply(WireErrorCode.OutOfSequence, "expected frame 5, got 7", 9, 7),
        new ErrorReply(WireErrorCode.Malformed, "", null, null),
    ];

    /// <summary>
    /// A data frame of real content: <paramref name="blocks"/> blocks of disk-like data compressed with
    /// zstd, with their SHA-256 hashes, a zero extent and a discard extent.
    /// </summary>
    public static DataFrame Data(Random rng, ulong stream, int blocks, long at = 1L << 32)
    {
        var data = SampleData.Disk(blocks * BlockSize, rng.Next());
        using var zstd = new ZstdCompressor(1);
        var payload = new byte[ZstdCompressor.MaxCompressedLength(data.Length)];
        int size = zstd.Compress(data, payload);
        var hashes = new byte[blocks * WireProtocol.BlockHashSize];
        BlockHashes.Compute(data, BlockSize, hashes);
        return new DataFrame(stream,
        [
            WireExtent.Zero(at - 8 * BlockSize, 4 * BlockSize),
            WireExtent.Data(at, data.Length, payload.AsMemory(0, size), hashes),
            WireExtent.Discard(at + data.Length, 3 * BlockSize),
        ]);
    }

    /// <summary>Every field of a message as text (payloads and hashes as hex), for equality checks.</summary>
    public static string Describe(ReplicationMessage m) => m switch
    {
        DataFrame d => $"data stream={d.Stream} " + string.Join(" ", d.Extents.Select(e =>
            $"[{e.Kind} {e.Offset}+{e.Length} payload={Convert.ToHexStringLower(e.Payload.Span)} hashes={Convert.ToHexStringLower(e.Hashes.Span)}]")),
        Commit c => $"commit stream={c.Stream} last={c.LastSequence} digest={Convert.ToHexStringLower(c.ImageDigest)}",
        CommitAck c => $"commit_ack stream={c.Stream} point={c.Point} digest={Convert.ToHexStringLower(c.ImageDigest)}",
        _ => m.ToString(),
    };

    public static byte[] Encode(ulong sequence, ReplicationMessage message)
    {
        using var encoder = new FrameEncoder();
        return encoder.Encode(sequence, message).ToArray();
    }

    /// <summary>
    /// A frame written entry by entry (any keys, order, values) and closed with a correct crc entry,
    /// so that what it tests is reached past the checksum.
    /// </summary>
    public static byte[] Craft(params (string Key, object? Value)[] entries)
    {
        using var buffer = new PooledBufferWriter();
        var w = new MessagePackWriter(buffer);
        w.WriteMapHeader(entries.Length + 1);
        foreach (var (key, value) in entries)
        {
            w.WriteString(key);
            MsgValue.Write(ref w, value);
        }
        w.WriteString("crc");
        w.WriteUInt32Full(Crc32C.Compute(buffer.WrittenSpan));
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Rewrites the trailer of a (mutated) frame so its crc matches its bytes again.</summary>
    public static void FixCrc(Span<byte> frame)
    {
        frame[^5] = 0xce;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(frame[^4..], Crc32C.Compute(frame[..^5]));
    }

    /// <summary>The envelope entries of a version-1 frame of the given type and sequence.</summary>
    public static (string, object?)[] Envelope(string type, long seq = 1) => [("v", (long)WireProtocol.Version), ("t", type), ("seq", seq)];

    public static WireFormatException Refused(byte[] frame)
    {
        try
        {
            var decoded = FrameDecoder.Decode(frame);
            throw new Xunit.Sdk.XunitException($"frame was accepted as {Describe(decoded.Message)}");
        }
        catch (WireFormatException e)
        {
            return e;
        }
    }
}
