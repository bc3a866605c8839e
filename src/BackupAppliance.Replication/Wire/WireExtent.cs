namespace BackupAppliance.Replication.Wire;

/// <summary>What an extent of a data frame says about its range of the image.</summary>
public enum ExtentKind : byte
{
    /// <summary>New bytes: a zstd frame of exactly the extent's length, and one hash per block.</summary>
    Data = 0,
    /// <summary>The range reads as zeros (written zeros, or never written); no payload.</summary>
    Zero = 1,
    /// <summary>The source discarded the range; the replica unmaps it (it then reads as zeros); no payload.</summary>
    Discard = 2,
}

/// <summary>
/// One range of the image in a <see cref="DataFrame"/>. Offsets and lengths are in bytes and aligned
/// to the offer's block size (the image's last block may end at the image size). For
/// <see cref="ExtentKind.Data"/>, <see cref="Payload"/> is one zstd frame that decompresses to exactly
/// <see cref="Length"/> bytes and <see cref="Hashes"/> holds the SHA-256 of each block of the
/// decompressed bytes, in order. Decoded extents borrow their bytes from the frame buffer.
/// </summary>
public readonly record struct WireExtent(ExtentKind Kind, long Offset, long Length, ReadOnlyMemory<byte> Payload, ReadOnlyMemory<byte> Hashes)
{
    public static WireExtent Data(long offset, long length, ReadOnlyMemory<byte> zstdPayload, ReadOnlyMemory<byte> blockHashes) =>
        new(ExtentKind.Data, offset, length, zstdPayload, blockHashes);

    public static WireExtent Zero(long offset, long length) => new(ExtentKind.Zero, offset, length, default, default);

    public static WireExtent Discard(long offset, long length) => new(ExtentKind.Discard, offset, length, default, default);

    public long End => Offset + Length;

    public int HashCount => Hashes.Length / WireProtocol.BlockHashSize;

    /// <summary>Elements of the extent's MessagePack array.</summary>
    internal int WireElements => Kind == ExtentKind.Data ? 5 : 3;

    /// <summary>What makes this extent invalid on its own, or null.</summary>
    public WireProblem? FindProblem()
    {
        if (Kind is not (ExtentKind.Data or ExtentKind.Zero or ExtentKind.Discard))
            return MessageRules.Bad($"unknown extent kind {(int)Kind}");
        if (Offset < 0 || Length <= 0)
            return MessageRules.Bad($"range at {Offset} of {Length} bytes is not a positive range");
        if (Offset > long.MaxValue - Length)
            return MessageRules.Bad($"range at {Offset} of {Length} bytes ends past the largest offset");
        if (Kind != ExtentKind.Data)
            return Payload.IsEmpty && Hashes.IsEmpty ? null : MessageRules.Bad($"{Kind} extent carries data");
        if (Length > WireProtocol.MaxFrameData)
            return MessageRules.TooBig($"data extent of {Length} bytes is longer than a frame's {WireProtocol.MaxFrameData}");
        if (Payload.IsEmpty)
            return MessageRules.Bad("data extent has an empty payload");
        if (Hashes.Length % WireProtocol.BlockHashSize != 0)
            return MessageRules.Bad($"block hashes are {Hashes.Length} bytes, not a multiple of {WireProtocol.BlockHashSize}");
        long most = (Length + WireProtocol.MinBlockSize - 1) / WireProtocol.MinBlockSize;
        long least = (Length + WireProtocol.MaxBlockSize - 1) / WireProtocol.MaxBlockSize;
        return HashCount < least || HashCount > most
            ? MessageRules.Bad($"{HashCount} block hashes cannot cover {Length} bytes (blocks are {WireProtocol.MinBlockSize} to {WireProtocol.MaxBlockSize} bytes)")
            : null;
    }
}
