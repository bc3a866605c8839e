using System.Text.Json;
using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Wire;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Replica;

/// <summary>
/// The store's small json records: a point's record (its <see cref="ReplicaPoint"/>, the digest in
/// hex) and a staging's progress (its <see cref="StagingState"/>). Both are replaced atomically
/// (<see cref="AtomicFile"/>: temp file, fsync, rename, fsync of the folder).
/// </summary>
internal static class RecordFiles
{
    public const int Version = 1;
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    private sealed record PointJson(int Format, string Agent, string Volume, string Id, string? BasePoint, string SourceSnapshot,
        ulong Stream, DateTimeOffset Created, long Size, int BlockSize, long ChangedBytes, string Digest);

    private sealed record ProgressJson(int Format, StagingRequest Request, ulong DurableSequence, long DurablePosition, long ChangedBytes);

    public static void WritePoint(string path, ReplicaPoint p) =>
        AtomicFile.Write(path, JsonSerializer.SerializeToUtf8Bytes(new PointJson(Version, p.Agent, p.Volume, p.Id, p.BasePoint, p.SourceSnapshot,
            p.Stream, p.Created, p.Size, p.BlockSize, p.ChangedBytes, Convert.ToHexStringLower(p.Digest)), Json));

    public static ReplicaPoint ReadPoint(string path)
    {
        var j = Read<PointJson>(path, "point record");
        byte[] digest;
        try { digest = Convert.FromHexString(j.Digest ?? ""); }
        catch (FormatException e) { throw new InvalidDataException($"point record {path}: digest is not hex: {e.Message}", e); }
        if (digest.Length != WireProtocol.DigestSize)
            throw new InvalidDataException($"point record {path}: digest is {digest.Length} bytes, not {WireProtocol.DigestSize}");
        return new ReplicaPoint(j.Agent, j.Volume, j.Id, j.BasePoint, j.SourceSnapshot, j.Stream, j.Created, j.Size, j.BlockSize, j.ChangedBytes, digest);
    }

    public static void WriteProgress(string path, StagingState s) =>
        AtomicFile.Write(path, JsonSerializer.SerializeToUtf8Bytes(new ProgressJson(Version, s.Request, s.DurableSequence, s.DurablePosition, s.ChangedBytes), Json));

    public static StagingState ReadProgress(string path)
    {
        var j = Read<ProgressJson>(path, "staging progress");
        if (j.Request is null)
            throw new InvalidDataException($"staging progress {path} has no request");
        return new StagingState(j.Request, j.DurableSequence, j.DurablePosition, j.ChangedBytes);
    }

    private static T Read<T>(string path, string what) where T : class
    {
        try
        {
            var value = JsonSerializer.Deserialize<T>(File.ReadAllBytes(path), Json) ?? throw new InvalidDataException($"{what} {path} is empty");
            int format = value switch { PointJson p => p.Format, ProgressJson g => g.Format, _ => Version };
            if (format != Version)
                throw new InvalidDataException($"{what} {path} has format {format}; this version reads {Version}");
            return value;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{what} {path} is not valid: {e.Message}", e);
        }
    }
}
