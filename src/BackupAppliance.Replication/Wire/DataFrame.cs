using static BackupAppliance.Replication.Wire.MessageFields;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Agent → receiver: extents of stream <see cref="Stream"/>, in ascending image order and not
/// overlapping (within the frame and across the stream's frames), at most
/// <see cref="WireProtocol.MaxFrameData"/> bytes of data and <see cref="WireProtocol.MaxExtentsPerFrame"/>
/// extents. Applying a frame twice leaves the image as applying it once.
/// </summary>
public sealed record DataFrame(ulong Stream, IReadOnlyList<WireExtent> Extents) : ReplicationMessage
{
    public override MessageType Type => MessageType.DataFrame;

    /// <summary>Bytes of block data the frame carries (before compression).</summary>
    public long DataLength
    {
        get
        {
            long total = 0;
            for (int i = 0; i < Extents.Count; i++)
            {
                if (Extents[i].Kind == ExtentKind.Data)
                    total += Extents[i].Length;
            }
            return total;
        }
    }

    /// <summary>The image offset just past the frame's last extent: the durable position once the frame is.</summary>
    public long End => Extents.Count == 0 ? 0 : Extents[^1].End;

    public override WireProblem? FindProblem()
    {
        if (MessageRules.Stream(Stream) is { } bad)
            return bad;
        if (Extents.Count is 0 or > WireProtocol.MaxExtentsPerFrame)
            return Extents.Count == 0
                ? MessageRules.Bad("data frame has no extents")
                : MessageRules.TooBig($"data frame has {Extents.Count} extents, more than {WireProtocol.MaxExtentsPerFrame}");
        long data = 0;
        long previousEnd = 0;
        for (int i = 0; i < Extents.Count; i++)
        {
            var e = Extents[i];
            if (e.FindProblem() is { } problem)
                return problem with { Text = $"extent {i}: {problem.Text}" };
            if (e.Offset < previousEnd)
                return MessageRules.Bad($"extent {i} at {e.Offset} starts before the previous one ends at {previousEnd}");
            previousEnd = e.End;
            if (e.Kind == ExtentKind.Data)
                data += e.Length;
        }
        return data > WireProtocol.MaxFrameData ? MessageRules.TooBig($"data frame carries {data} bytes of data, more than {WireProtocol.MaxFrameData}") : null;
    }

    internal override int FieldCount => 2;

    internal override void WriteFields(ref MessagePackWriter w)
    {
        Field(ref w, "stream"u8, Stream);
        w.WriteStringUtf8("ext"u8);
        w.WriteArrayHeader(Extents.Count);
        for (int i = 0; i < Extents.Count; i++)
        {
            var e = Extents[i];
            w.WriteArrayHeader(e.WireElements);
            w.WriteUInt64((byte)e.Kind);
            w.WriteInt64(e.Offset);
            w.WriteInt64(e.Length);
            if (e.Kind == ExtentKind.Data)
            {
                w.WriteBinary(e.Payload.Span);
                w.WriteBinary(e.Hashes.Span);
            }
        }
    }

    internal static DataFrame Read(ref MessagePackReader r, int fields, ReadOnlyMemory<byte> frame)
    {
        const MessageType T = MessageType.DataFrame;
        ulong? stream = null;
        WireExtent[]? extents = null;
        for (int i = 0; i < fields; i++)
        {
            int at = r.Consumed;
            var key = r.ReadStringUtf8();
            if (key.SequenceEqual("stream"u8)) stream = Unique(stream, r.ReadUInt64(), T, "stream", at);
            else if (key.SequenceEqual("ext"u8)) extents = Unique(extents, ReadExtents(ref r, frame), T, "ext", at);
            else SkipUnknown(ref r, key, T, at);
        }
        int end = r.Consumed;
        return new DataFrame(Need(stream, T, "stream", end), Need(extents, T, "ext", end));
    }

    private static WireExtent[] ReadExtents(ref MessagePackReader r, ReadOnlyMemory<byte> frame)
    {
        int count = r.ReadArrayHeader(); // bounded by the reader's collection limit before this allocation
        var extents = new WireExtent[count];
        for (int i = 0; i < count; i++)
        {
            int at = r.Consumed;
            int elements = r.ReadArrayHeader();
            int kindAt = r.Consumed;
            uint kindNumber = r.ReadUInt32();
            if (kindNumber > (uint)ExtentKind.Discard)
                throw new WireFormatException(WireErrorCode.Malformed, $"extent {i} has unknown kind {kindNumber}", kindAt);
            var kind = (ExtentKind)kindNumber;
            int expected = kind == ExtentKind.Data ? 5 : 3;
            if (elements != expected)
                throw new WireFormatException(WireErrorCode.Malformed, $"{kind} extent {i} has {elements} elements, not {expected}", at);
            long offset = r.ReadInt64();
            long length = r.ReadInt64();
            extents[i] = kind == ExtentKind.Data
                ? WireExtent.Data(offset, length, Borrow(ref r, frame), Borrow(ref r, frame))
                : new WireExtent(kind, offset, length, default, default);
        }
        return extents;
    }
}
