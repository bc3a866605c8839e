using System.Collections.Concurrent;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Receiving;

/// <summary>A snapshot of a receiver's counters since it started (for metrics and logs).</summary>
/// <param name="FramesReceived">Messages received on the control and data subjects, good or bad.</param>
/// <param name="BytesReceived">Their bytes.</param>
/// <param name="DataFramesApplied">Data frames written to a staging.</param>
/// <param name="DataBytesApplied">Bytes of data extents written (decompressed).</param>
/// <param name="DuplicateFrames">Data frames at or below the last applied, answered with the current ack.</param>
/// <param name="StreamsBegun">Offers answered with begin.</param>
/// <param name="StreamsResumed">Offers answered with resume.</param>
/// <param name="Commits">Points published.</param>
/// <param name="ErrorsSent">Error replies by code.</param>
public sealed record ReceiverStatistics(
    long FramesReceived,
    long BytesReceived,
    long DataFramesApplied,
    long DataBytesApplied,
    long DuplicateFrames,
    long StreamsBegun,
    long StreamsResumed,
    long Commits,
    IReadOnlyDictionary<WireErrorCode, long> ErrorsSent)
{
    public long Errors => ErrorsSent.Values.Sum();

    public long ErrorsOf(WireErrorCode code) => ErrorsSent.GetValueOrDefault(code);
}

/// <summary>The live counters behind <see cref="ReceiverStatistics"/>; safe to bump from any thread.</summary>
internal sealed class ReceiverCounters
{
    private readonly ConcurrentDictionary<WireErrorCode, long> _errors = new();
    private long _frames, _bytes, _applied, _appliedBytes, _duplicates, _begun, _resumed, _commits;

    public void Received(int bytes)
    {
        Interlocked.Increment(ref _frames);
        Interlocked.Add(ref _bytes, bytes);
    }

    public void Applied(long dataBytes)
    {
        Interlocked.Increment(ref _applied);
        Interlocked.Add(ref _appliedBytes, dataBytes);
    }

    public void Duplicate() => Interlocked.Increment(ref _duplicates);

    public void Begun() => Interlocked.Increment(ref _begun);

    public void Resumed() => Interlocked.Increment(ref _resumed);

    public void Committed() => Interlocked.Increment(ref _commits);

    public void Error(WireErrorCode code) => _errors.AddOrUpdate(code, 1, (_, n) => n + 1);

    public ReceiverStatistics Snapshot() => new(
        Interlocked.Read(ref _frames), Interlocked.Read(ref _bytes), Interlocked.Read(ref _applied), Interlocked.Read(ref _appliedBytes),
        Interlocked.Read(ref _duplicates), Interlocked.Read(ref _begun), Interlocked.Read(ref _resumed), Interlocked.Read(ref _commits),
        new Dictionary<WireErrorCode, long>(_errors));
}
