namespace BackupAppliance.Replication.Wire;

/// <summary>The protocol's fixed numbers (PROTOCOL.md explains each).</summary>
public static class WireProtocol
{
    /// <summary>The version this code writes and the newest it reads.</summary>
    public const uint Version = 2;

    /// <summary>The oldest version this code reads: version 1 hashed blocks with SHA-256, which no peer checks any more.</summary>
    public const uint OldestVersion = 2;

    /// <summary>"version 2", or "versions 2 to 3": for error texts.</summary>
    public static string VersionsSpoken => OldestVersion == Version ? $"version {Version}" : $"versions {OldestVersion} to {Version}";

    /// <summary>
    /// Largest encoded frame: NATS's default max_payload, so frames pass an untuned server.
    /// </summary>
    public const int MaxFrameBytes = 1 << 20;

    /// <summary>
    /// Most bytes of block data one data frame carries (before compression). Chosen so that data
    /// zstd cannot shrink, with its hashes and the most extents, still encodes within <see cref="MaxFrameBytes"/>.
    /// </summary>
    public const int MaxFrameData = 960 * 1024;

    /// <summary>Most extents in one data frame.</summary>
    public const int MaxExtentsPerFrame = 1024;

    /// <summary>Bytes of one block hash (XXH3-128, see <see cref="Integrity.BlockHashes"/>).</summary>
    public const int BlockHashSize = 16;

    /// <summary>Bytes of the image digest (SHA-256 over the block hashes, see <see cref="Integrity.ImageDigest"/>).</summary>
    public const int DigestSize = 32;

    /// <summary>Smallest replication block (the unit of hashing); a power of two.</summary>
    public const int MinBlockSize = 4096;

    /// <summary>Largest replication block: one must fit a data frame.</summary>
    public const int MaxBlockSize = 512 * 1024;

    /// <summary>Longest str field (ids, names, error text), in UTF-8 bytes.</summary>
    public const int MaxTextBytes = 1024;

    /// <summary>Longest agent or volume name: they are NATS subject tokens.</summary>
    public const int MaxNameLength = 64;

    /// <summary>What a frame decoder allows; larger values are refused before anything is allocated.</summary>
    public static MessagePackLimits FrameLimits { get; } = new()
    {
        MaxDepth = 4,
        MaxStringBytes = MaxTextBytes,
        MaxBinaryBytes = MaxFrameBytes,
        MaxCollectionCount = MaxExtentsPerFrame,
    };

    /// <summary>Whether <paramref name="name"/> may be an agent or volume name (a NATS subject token: 1 to 64 ASCII letters, digits, '-' or '_').</summary>
    public static bool IsName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= MaxNameLength && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');
}
