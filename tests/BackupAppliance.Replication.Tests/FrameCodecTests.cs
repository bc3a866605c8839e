using System.Runtime.InteropServices;
using System.Security.Cryptography;
using BackupAppliance.Core;
using BackupAppliance.Replication.Compression;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;
using static BackupAppliance.Replication.Tests.Support.Frames;

namespace BackupAppliance.Replication.Tests;

/// <summary>Frames: round trips of every message, the exact layout, and every refusal with its error code.</summary>
public class FrameCodecTests
{
    [Fact]
    public void EveryMessageTypeRoundTrips()
    {
        var messages = OneOfEach(new Random(1));
        Assert.Equal(Enum.GetValues<MessageType>().Length, messages.Select(m => m.Type).Distinct().Count());
        ulong seq = 0;
        foreach (var m in messages)
        {
            var frame = Encode(seq, m);
            var decoded = FrameDecoder.Decode(frame);
            Assert.Equal(WireProtocol.Version, decoded.Version);
            Assert.Equal(seq, decoded.Sequence);
            Assert.Equal(m.GetType(), decoded.Message.GetType());
            Assert.Equal(Describe(m), Describe(decoded.Message));
            seq = seq * 3 + 200; // 0, 200, 800, … crosses every integer width
        }
    }

    /// <summary>The layout of a credit frame, written out byte by byte from the specification.</summary>
    [Fact]
    public void CreditFrameHasTheDocumentedBytes()
    {
        var frame = Encode(7, new Credit(3, 300));
        var expectedBody = Convert.FromHexString(
            "86" + "a176" + "02" + "a174" + "a6637265646974" + "a3736571" + "07"
            + "a673747265616d" + "03" + "a47570746f" + "cd012c" + "a3637263");
        Assert.Equal(Convert.ToHexStringLower(expectedBody), Convert.ToHexStringLower(frame.AsSpan(0, frame.Length - 5)));
        Assert.Equal(0xce, frame[^5]);
        Assert.Equal(Crc32C.Compute(expectedBody), System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(frame.AsSpan(frame.Length - 4)));
    }

    [Fact]
    public void DecodedPayloadsBorrowTheFrameBuffer()
    {
        var frame = Encode(1, Data(new Random(2), 5, 4));
        var data = (DataFrame)FrameDecoder.Decode(frame).Message;
        var extent = data.Extents[1];
        Assert.True(MemoryMarshal.TryGetArray(extent.Payload, out var segment));
        Assert.Same(frame, segment.Array);
        Assert.Equal(4, extent.HashCount);
    }

    [Fact]
    public void TheDataPathEndToEnd()
    {
        // Agent: hash and compress 64 blocks, frame them. Receiver: decode, decompress within the
        // extent's length, check every block's hash, and get the agent's bytes back.
        var source = SampleData.Disk(64 * BlockSize, 9);
        var hashes = new byte[64 * WireProtocol.BlockHashSize];
        BlockHashes.Compute(source, BlockSize, hashes);
        using var zstd = new ZstdCompressor(3);
        using var payload = new PooledBufferWriter();
        zstd.Compress(source, payload);
        var frame = Encode(1, new DataFrame(42, [WireExtent.Data(1 << 20, source.Length, payload.WrittenMemory, hashes)]));

        var decoded = (DataFrame)FrameDecoder.Decode(frame).Message;
        var e = Assert.Single(decoded.Extents);
        using var unzstd = new ZstdDecompressor();
        var image = new byte[e.Length];
        Assert.Equal(e.Length, unzstd.Decompress(e.Payload.Span, image, (int)e.Length));
        Assert.Equal(-1, BlockHashes.FindMismatch(image, BlockSize, e.Hashes.Span));
        Assert.Equal(source, image);
        image[5 * BlockSize + 17] ^= 1;
        Assert.Equal(5, BlockHashes.FindMismatch(image, BlockSize, e.Hashes.Span));
    }

    [Fact]
    public void TheWorstCaseDataFrameFitsTheFrameLimit()
    {
        // Incompressible data in the smallest blocks, each its own extent, and the rest of the
        // extent budget spent on zero extents, at offsets that need 9 bytes.
        var rng = new Random(3);
        using var zstd = new ZstdCompressor(1);
        var extents = new List<WireExtent>();
        long at = 1L << 50;
        for (int i = 0; i < WireProtocol.MaxFrameData / WireProtocol.MinBlockSize; i++, at += 2 * BlockSize)
        {
            var block = SampleData.Random(BlockSize, rng.Next());
            var z = new byte[ZstdCompressor.MaxCompressedLength(BlockSize)];
            int n = zstd.Compress(block, z);
            var h = new byte[WireProtocol.BlockHashSize];
            BlockHashes.Compute(block, BlockSize, h);
            extents.Add(WireExtent.Data(at, BlockSize, z.AsMemory(0, n), h));
        }
        while (extents.Count < WireProtocol.MaxExtentsPerFrame)
        {
            extents.Add(WireExtent.Zero(at, 1L << 40));
            at += (1L << 40) + BlockSize;
        }
        var frame = Encode(ulong.MaxValue, new DataFrame(ulong.MaxValue, extents));
        Assert.InRange(frame.Length, WireProtocol.MaxFrameData, WireProtocol.MaxFrameBytes);
        Assert.Equal(WireProtocol.MaxFrameData, ((DataFrame)FrameDecoder.Decode(frame).Message).DataLength);
    }

    [Fact]
    public void NewerVersionIsRefusedWithBothNumbers()
    {
        var e = Refused(Craft([("v", 3L), ("t", "credit"), ("seq", 1L), ("stream", 1L), ("upto", 2L)]));
        Assert.Equal(WireErrorCode.UnsupportedVersion, e.Code);
        Assert.Contains("message version 3 is not supported: this peer speaks version 2", e.Message);

        // Version 1 hashed blocks with SHA-256: its frames are refused, not misread.
        e = Refused(Craft([("v", 1L), ("t", "credit"), ("seq", 1L), ("stream", 1L), ("upto", 2L)]));
        Assert.Equal(WireErrorCode.UnsupportedVersion, e.Code);
        Assert.Contains("message version 1 is not supported: this peer speaks version 2", e.Message);

        // A newer peer may frame differently: its version is judged before its checksum,
        // and before its type.
        var newer = Craft([("v", 7L), ("t", "teleport"), ("seq", 1L)]);
        newer[^1] ^= 0xff;
        e = Refused(newer);
        Assert.Equal(WireErrorCode.UnsupportedVersion, e.Code);
        Assert.Contains("version 7", e.Message);

        e = Refused(Craft([("v", 0L), ("t", "credit"), ("seq", 1L), ("stream", 1L), ("upto", 2L)]));
        Assert.Equal(WireErrorCode.UnsupportedVersion, e.Code);
    }

    [Fact]
    public void UnknownTypeIsRefusedByName()
    {
        var e = Refused(Craft([.. Envelope("teleport"), ("stream", 1L)]));
        Assert.Equal(WireErrorCode.UnknownMessageType, e.Code);
        Assert.Contains("unknown message type 'teleport' in a version 2 frame", e.Message);
        Assert.Equal(6, e.Offset);
    }

    [Fact]
    public void EverySingleBitFlipIsRefused()
    {
        var frame = Encode(5, new Ack(7, 12, 1L << 33));
        var codes = new Dictionary<WireErrorCode, int>();
        for (int bit = 0; bit < frame.Length * 8; bit++)
        {
            var damaged = frame.ToArray();
            damaged[bit / 8] ^= (byte)(1 << (bit % 8));
            var e = Refused(damaged);
            codes[e.Code] = codes.GetValueOrDefault(e.Code) + 1;
        }
        Assert.True(codes.GetValueOrDefault(WireErrorCode.ChecksumMismatch) > frame.Length * 6, string.Join(", ", codes));
        var flipped = frame.ToArray();
        flipped[20] ^= 4;
        var mismatch = Refused(flipped);
        Assert.Equal(WireErrorCode.ChecksumMismatch, mismatch.Code);
        Assert.Matches("crc32c of the frame's first \\d+ bytes is 0x[0-9a-f]{8}, the frame says 0x[0-9a-f]{8}", mismatch.Message);
    }

    [Fact]
    public void EveryTruncationIsRefusedAsTruncated()
    {
        foreach (var m in OneOfEach(new Random(4)))
        {
            var frame = Encode(3, m);
            for (int cut = 0; cut < frame.Length; cut++)
            {
                var e = Refused(frame[..cut]);
                Assert.True(e.Code == WireErrorCode.Truncated, $"{m.Type} cut at {cut} of {frame.Length}: {e.Message}");
            }
        }
    }

    [Fact]
    public void OversizedFramesAndDataAreRefused()
    {
        var e = Refused(new byte[WireProtocol.MaxFrameBytes + 1]);
        Assert.Equal(WireErrorCode.Oversized, e.Code);
        Assert.Contains($"frame of {WireProtocol.MaxFrameBytes + 1} bytes is larger than {WireProtocol.MaxFrameBytes}", e.Message);

        // More data than a frame may carry: the encoder will not write it, the decoder will not take it.
        var tooMuch = new DataFrame(1, [WireExtent.Data(0, WireProtocol.MaxFrameData + 4096, new byte[10], new byte[WireProtocol.BlockHashSize * 241])]);
        var a = Assert.Throws<ArgumentException>(() => Encode(1, tooMuch));
        Assert.Contains("longer than a frame's", a.Message);
        var two = new object?[]
        {
            new object?[] { 0L, 0L, (long)WireProtocol.MaxFrameData, new byte[10], new byte[WireProtocol.BlockHashSize * 240] },
            new object?[] { 0L, (long)WireProtocol.MaxFrameData, 4096L, new byte[10], new byte[WireProtocol.BlockHashSize] },
        };
        e = Refused(Craft([.. Envelope("data"), ("stream", 1L), ("ext", two)]));
        Assert.Equal(WireErrorCode.Oversized, e.Code);
        Assert.Contains($"carries {WireProtocol.MaxFrameData + 4096} bytes of data", e.Message);

        // More extents than allowed: refused at the array header, before anything is allocated for them.
        var many = Enumerable.Range(0, WireProtocol.MaxExtentsPerFrame + 1).Select(i => (object?)new object?[] { 1L, i * 8192L, 4096L }).ToArray();
        e = Refused(Craft([.. Envelope("data"), ("stream", 1L), ("ext", many)]));
        Assert.Equal(WireErrorCode.Oversized, e.Code);
        Assert.Contains("array of 1025 elements is larger than the limit of 1024", e.Message);

        var longText = new string('x', WireProtocol.MaxTextBytes + 1);
        e = Refused(Craft([.. Envelope("error"), ("code", 1L), ("msg", longText), ("stream", null), ("about", null)]));
        Assert.Equal(WireErrorCode.Oversized, e.Code);
    }

    public static TheoryData<string, (string, object?)[], string> MalformedFrames => new()
    {
        { "missing field", [.. Envelope("credit"), ("stream", 1L)], "credit message lacks field 'upto'" },
        { "duplicate field", [.. Envelope("credit"), ("stream", 1L), ("upto", 2L), ("stream", 1L)], "credit message has field 'stream' twice" },
        { "wrong field type", [.. Envelope("credit"), ("stream", "one"), ("upto", 2L)], "expected uint64, found string" },
        { "negative where unsigned", [.. Envelope("credit"), ("stream", -1L), ("upto", 2L)], "integer -1 is out of range for uint64" },
        { "t before v", [("t", "credit"), ("v", 2L), ("seq", 1L), ("stream", 1L), ("upto", 2L)], "the frame's first key must be 'v'" },
        { "no seq", [("v", 2L), ("t", "credit"), ("stream", 1L), ("upto", 2L)], "the frame's third key must be 'seq'" },
        { "envelope only", [("v", 2L), ("t", "credit")], "frame map has 3 entries" },
        { "stream zero", [.. Envelope("credit"), ("stream", 0L), ("upto", 2L)], "stream 0 is not a stream id" },
        { "bad agent name", [.. Envelope("offer"), ("agent", "host.example"), ("volume", "v"), ("base", null), ("target", "s"), ("size", 4096L), ("block", 4096L)], "agent 'host.example' has '.'" },
        { "block not a power of two", [.. Envelope("offer"), ("agent", "a"), ("volume", "v"), ("base", null), ("target", "s"), ("size", 4096L), ("block", 12288L)], "block size 12288 is not a power of two" },
        { "empty target", [.. Envelope("offer"), ("agent", "a"), ("volume", "v"), ("base", null), ("target", ""), ("size", 4096L), ("block", 4096L)], "target snapshot is empty" },
        { "short digest", [.. Envelope("commit"), ("stream", 1L), ("last", 3L), ("digest", new byte[31])], "image digest is 31 bytes, not 32" },
        { "no extents", [.. Envelope("data"), ("stream", 1L), ("ext", Array.Empty<object?>())], "data frame has no extents" },
        { "unknown extent kind", [.. Envelope("data"), ("stream", 1L), ("ext", new object?[] { new object?[] { 9L, 0L, 4096L } })], "extent 0 has unknown kind 9" },
        { "extent kind past a byte", [.. Envelope("data"), ("stream", 1L), ("ext", new object?[] { new object?[] { 256L, 0L, 4096L, new byte[1], new byte[32] } })], "extent 0 has unknown kind 256" },
        { "zero extent with data", [.. Envelope("data"), ("stream", 1L), ("ext", new object?[] { new object?[] { 1L, 0L, 4096L, new byte[1], new byte[32] } })], "Zero extent 0 has 5 elements, not 3" },
        { "data extent without hashes", [.. Envelope("data"), ("stream", 1L), ("ext", new object?[] { new object?[] { 0L, 0L, 4096L, new byte[1] } })], "Data extent 0 has 4 elements, not 5" },
        { "too few hashes", [.. Envelope("data"), ("stream", 1L), ("ext", new object?[] { new object?[] { 0L, 0L, 1L << 20, new byte[1], new byte[32] } })], "longer than a frame's" },
        { "hashes not whole", [.. Envelope("data"), ("stream", 1L), ("ext", new object?[] { new object?[] { 0L, 0L, 4096L, new byte[1], new byte[33] } })], "block hashes are 33 bytes" },
        { "extents out of order", [.. Envelope("data"), ("stream", 1L), ("ext", new object?[] { new object?[] { 1L, 8192L, 4096L }, new object?[] { 2L, 0L, 4096L } })], "extent 1 at 0 starts before the previous one ends at 12288" },
        { "extents overlap", [.. Envelope("data"), ("stream", 1L), ("ext", new object?[] { new object?[] { 1L, 0L, 8192L }, new object?[] { 2L, 4096L, 4096L } })], "extent 1 at 4096 starts before" },
        { "empty extent", [.. Envelope("data"), ("stream", 1L), ("ext", new object?[] { new object?[] { 1L, 0L, 0L } })], "is not a positive range" },
        { "extent past the end", [.. Envelope("data"), ("stream", 1L), ("ext", new object?[] { new object?[] { 1L, long.MaxValue - 10, 4096L } })], "ends past the largest offset" },
        { "negative position", [.. Envelope("ack"), ("stream", 1L), ("durable", 2L), ("pos", -4096L)], "position -4096 is negative" },
        { "error code 0", [.. Envelope("error"), ("code", 0L), ("msg", "x"), ("stream", null), ("about", null)], "error code 0 is not an error" },
        { "map key not a str", [.. Envelope("credit"), ("stream", 1L), ("upto", 2L)], "" },
    };

    [Theory]
    [MemberData(nameof(MalformedFrames))]
    public void MalformedFramesAreRefusedNamingTheProblem(string name, (string, object?)[] entries, string message)
    {
        if (name == "map key not a str")
        {
            // Written by hand: an integer where a key belongs.
            var bytes = Craft(entries).ToList();
            int keyAt = bytes.IndexOf(0xa6, 16); // the str header of "stream"
            Assert.True(keyAt > 0);
            bytes[keyAt] = 0x05;
            bytes.RemoveRange(keyAt + 1, 6);
            var frame = bytes.ToArray();
            frame[0] = 0x86;
            FixCrc(frame);
            var k = Refused(frame);
            Assert.Equal(WireErrorCode.Malformed, k.Code);
            Assert.Contains("expected str, found integer (0x05)", k.Message);
            return;
        }
        var e = Refused(Craft(entries));
        Assert.True(e.Code == WireErrorCode.Malformed || (e.Code == WireErrorCode.Oversized && message.Contains("longer")), $"{name}: {e.Message}");
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void TheCrcEntryMustBeLastAndFixedWidth()
    {
        // Small crc values written in their smallest form: not a trailer.
        using var buffer = new PooledBufferWriter();
        var w = new MessagePackWriter(buffer);
        w.WriteMapHeader(4);
        foreach (var (k, v) in Envelope("ack"))
        {
            w.WriteString(k);
            MsgValue.Write(ref w, v);
        }
        w.WriteString("crc");
        w.WriteUInt64(5);
        var e = Refused(buffer.WrittenSpan.ToArray());
        Assert.Equal(WireErrorCode.ChecksumMismatch, e.Code);
        Assert.Contains("does not end in a 5-byte uint32 crc32c", e.Message);

        // A second crc entry among the fields (with a valid trailer at the very end).
        var frame = Craft([.. Envelope("credit"), ("stream", 1L), ("upto", 2L), ("crc", 1L)]);
        e = Refused(frame);
        Assert.Equal(WireErrorCode.Malformed, e.Code);
        Assert.Contains("credit message has field 'crc' twice", e.Message);
    }

    [Fact]
    public void UnknownFieldsAreSkippedAndOptionalFieldsMayBeAbsent()
    {
        var frame = Craft([.. Envelope("error", 9), ("code", 999L), ("hint", new MsgMap([new("retry", new object?[] { 1L, 2.5 })])), ("msg", "later")]);
        var decoded = FrameDecoder.Decode(frame);
        var error = Assert.IsType<ErrorReply>(decoded.Message);
        Assert.Equal((WireErrorCode)999, error.Code);
        Assert.Equal("later", error.Message);
        Assert.Null(error.Stream);
        Assert.Null(error.About);
        Assert.Equal(9UL, decoded.Sequence);

        // Nesting deeper than the frame limit is refused even in a field nobody reads.
        var deep = Craft([.. Envelope("credit"), ("stream", 1L), ("upto", 2L), ("x", new object?[] { new object?[] { new object?[] { new object?[] { new object?[] { 1L } } } } })]);
        Assert.Equal(WireErrorCode.Oversized, Refused(deep).Code);
    }

    [Fact]
    public void InvalidMessagesAreNotEncoded()
    {
        using var encoder = new FrameEncoder();
        var good = encoder.Encode(1, new Credit(1, 1)).ToArray();
        var e = Assert.Throws<ArgumentException>(() => encoder.Encode(2, new Credit(0, 1)));
        Assert.Contains("credit message is invalid: stream 0 is not a stream id", e.Message);
        e = Assert.Throws<ArgumentException>(() => encoder.Encode(2, new BackupOffer("a b", "v", null, "s", 1, 4096)));
        Assert.Contains("agent 'a b' has ' '", e.Message);
        e = Assert.Throws<ArgumentException>(() => encoder.Encode(2, new DataFrame(1, [WireExtent.Zero(8192, 4096), WireExtent.Zero(0, 4096)])));
        Assert.Contains("extent 1 at 0 starts before", e.Message);
        Assert.Equal(good, encoder.Encode(1, new Credit(1, 1)).ToArray());
    }

    [Fact]
    public void EncodingADataFrameAllocatesNothingOnceWarm()
    {
        var frame = Data(new Random(6), 3, 240);
        using var encoder = new FrameEncoder();
        int total = 0;
        long allocated = SteadyAllocation.Measure(() =>
        {
            total = 0;
            for (ulong seq = 2; seq < 50; seq++)
                total += encoder.Encode(seq, frame).Length;
        });
        Assert.Equal(0, allocated);
        Assert.True(total > 48 * 240 * 1024 / 4, $"{total} bytes encoded");
    }

    [Fact]
    public void ImageDigestIsSha256OverTheBlockHashes()
    {
        const long size = 10 * BlockSize + 100; // a short last block
        var image = SampleData.Disk((int)size, 12);
        image.AsSpan(3 * BlockSize, 4 * BlockSize).Clear();
        image.AsSpan(10 * BlockSize).Clear();
        var all = new byte[11 * WireProtocol.BlockHashSize];
        BlockHashes.Compute(image, BlockSize, all);
        var expected = SHA256.HashData(all);

        using var digest = new ImageDigest(size, BlockSize);
        digest.AppendHashes(all.AsSpan(0, 3 * WireProtocol.BlockHashSize));
        digest.AppendZeroBlocks(4);
        digest.AppendHashes(all.AsSpan(7 * WireProtocol.BlockHashSize, 3 * WireProtocol.BlockHashSize));
        Assert.Throws<InvalidOperationException>(() => digest.AppendZeroBlocks(2));
        digest.AppendZeroBlocks(1); // the short last block, all zeros
        Assert.Equal(expected, digest.Finish());

        using var partial = new ImageDigest(size, BlockSize);
        partial.AppendZeroBlocks(3);
        var x = Assert.Throws<InvalidOperationException>(() => partial.Finish());
        Assert.Contains("has 3 of 11 blocks", x.Message);
    }
}
