using System.Security.Cryptography;
using System.Text;
using BackupAppliance.Core;
using BackupAppliance.Replication.Compression;
using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Receiving;

/// <summary>
/// The receiver's side of one agent's volume: its unfinished stream (at most one), the rules of
/// PROTOCOL.md applied to each offer, data frame and commit, and the replies. Calls come one at a
/// time (<see cref="Gate"/>). Everything a stream needs after a restart is in the store's durable
/// staging state; what is only here (frames applied but not yet durable) may be lost, and the
/// agent resends it. A data frame's store writes go on in the background while the next frame is
/// decompressed and verified (one frame's writes at a time); anything else that touches the staging
/// waits for them first, and a write that failed forgets the staging like any store failure.
/// </summary>
internal sealed class VolumeSession : IAsyncDisposable
{
    private readonly string _agent;
    private readonly string _volume;
    private readonly string _replySubject;
    private readonly IReplicaStore _store;
    private readonly ITransport _transport;
    private readonly ReceiverOptions _options;
    private readonly TimeProvider _time;
    private readonly ReceiverCounters _counters;
    private readonly FrameEncoder _encoder = new();
    private readonly ZstdDecompressor _zstd = new();
    /// <summary>A frame's data, decompressed: aligned, so the store may write it past the page cache. Two: one being written, one being verified.</summary>
    private readonly AlignedBufferPool _frameData = new(WireProtocol.MaxFrameData, keep: 2);

    private bool _loaded;
    private IStagedPoint? _staged;
    private ulong _applied;
    private long _appliedPosition;
    private ulong _durable;
    private long _durablePosition;
    private long _changedBytes;
    private int _sinceDurable;
    private ulong _credit;
    private (ulong Sequence, Commit Commit)? _pendingCommit;
    private long _lastActivity;
    private ulong _replies;
    /// <summary>The last accepted data frame's store writes, still going on (null: none).</summary>
    private Task? _writing;

    public VolumeSession(string agent, string volume, IReplicaStore store, ITransport transport, ReceiverOptions options, TimeProvider time, ReceiverCounters counters)
    {
        _agent = agent;
        _volume = volume;
        _replySubject = ReplicationSubjects.Reply(agent, volume);
        _store = store;
        _transport = transport;
        _options = options;
        _time = time;
        _counters = counters;
    }

    public SemaphoreSlim Gate { get; } = new(1, 1);

    private StagingRequest? Request => _staged?.State.Request;

    /// <summary>Acts on one received frame (or answers why it cannot be decoded); never throws but for cancellation.</summary>
    public async Task HandleAsync(string kind, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        WireFrame frame;
        try
        {
            frame = FrameDecoder.Decode(payload);
        }
        catch (WireFormatException e)
        {
            ulong? about = e.Code == WireErrorCode.ChecksumMismatch ? null : FrameDecoder.PeekSequence(payload.Span);
            await ErrorAsync(e.Code, e.What, null, about, cancellationToken);
            return;
        }
        ulong? stream = frame.Message switch { DataFrame d => d.Stream, Commit c => c.Stream, _ => null };
        try
        {
            if (frame.Message is not DataFrame)
                await SettleWritesAsync();
            switch (kind, frame.Message)
            {
                case ("ctl", BackupOffer offer):
                    await OfferAsync(offer, cancellationToken);
                    break;
                case ("ctl", Commit commit):
                    await CommitAsync(frame.Sequence, commit, cancellationToken);
                    break;
                case ("data", DataFrame data):
                    await DataAsync(frame.Sequence, data, cancellationToken);
                    break;
                default:
                    throw new FrameRefusal(WireErrorCode.Malformed, $"a '{MessageTypeNames.Of(frame.Message.Type)}' message does not belong on the {kind} subject");
            }
        }
        catch (FrameRefusal refusal)
        {
            await ErrorAsync(refusal.Code, refusal.Message, stream, frame.Sequence, cancellationToken);
        }
        catch (ReplicaStoreException e) when (e.Error is ReplicaStoreError.UnknownVolume or ReplicaStoreError.BaseMismatch)
        {
            // Refused before the store changed anything (e.g. a base of another size): the agent decides.
            var code = e.Error == ReplicaStoreError.UnknownVolume ? WireErrorCode.UnknownVolume : WireErrorCode.BaseMismatch;
            await ErrorAsync(code, e.Message, stream, frame.Sequence, cancellationToken);
        }
        catch (Exception e) when (e is Core.SpaceExhaustedException or Core.VolumeException { Error: Core.VolumeError.NoSpace })
        {
            await ErrorAsync(WireErrorCode.NoSpace, $"the receiver's pool is full: {e.Message}", stream, frame.Sequence, cancellationToken);
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // The staging's state here is unknown: forget it, and reload its durable state next time.
            await ForgetAsync();
            await ErrorAsync(WireErrorCode.Internal, $"{e.GetType().Name}: {e.Message}", stream, frame.Sequence, cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await ForgetAsync();
        _encoder.Dispose();
        _zstd.Dispose();
        Gate.Dispose();
    }

    private async Task OfferAsync(BackupOffer offer, CancellationToken cancellationToken)
    {
        if (offer.Agent != _agent || offer.Volume != _volume)
            throw new FrameRefusal(WireErrorCode.UnknownVolume, $"the offer names {offer.Agent}/{offer.Volume} but came on the subject of {_agent}/{_volume}");
        var latest = _store.ListPoints(_agent, _volume).LastOrDefault();
        if (latest is not null && latest.SourceSnapshot == offer.TargetSnapshot)
        {
            // Committed already (the agent lost our commit_ack): the same answer again.
            await ReplyAsync(new CommitAck(latest.Stream, latest.Id, latest.Digest), cancellationToken);
            return;
        }
        await LoadAsync(cancellationToken);
        if (Request is { } open && open.BasePoint == offer.BasePoint && open.Target == offer.TargetSnapshot && open.Size == offer.Size && open.BlockSize == offer.BlockSize)
        {
            await MakeDurableAsync(cancellationToken);
            _pendingCommit = null;
            _credit = _durable + (ulong)_options.CreditWindow;
            Touch();
            _counters.Resumed();
            await ReplyAsync(new Resume(open.Stream, _durable, _durablePosition, _credit), cancellationToken);
            return;
        }
        if (offer.BasePoint is not null && offer.BasePoint != latest?.Id)
            throw new FrameRefusal(WireErrorCode.BaseMismatch,
                $"the offer's base is point '{offer.BasePoint}', but the latest point of {_agent}/{_volume} is {(latest is null ? "none (a full backup is needed)" : $"'{latest.Id}'")}");
        if (offer.BasePoint is not null && latest!.BlockSize != offer.BlockSize)
            throw new FrameRefusal(WireErrorCode.BaseMismatch, $"the offer's block size {offer.BlockSize} differs from base point '{latest.Id}''s {latest.BlockSize}");
        if (Request is { } other)
        {
            var quiet = _time.GetElapsedTime(_lastActivity);
            if (quiet < _options.IdleTimeout)
                throw new FrameRefusal(WireErrorCode.Busy,
                    $"stream {other.Stream} of {_agent}/{_volume} (target '{other.Target}') was active {quiet.TotalSeconds:F0} s ago; another offer may replace it after {_options.IdleTimeout.TotalSeconds:F0} s");
            await ForgetAsync(); // BeginStagingAsync drops the old staging
        }
        ulong stream = NewStreamId(latest?.Stream);
        _staged = await _store.BeginStagingAsync(new StagingRequest(_agent, _volume, stream, offer.BasePoint, offer.TargetSnapshot, offer.Size, offer.BlockSize), cancellationToken);
        _loaded = true;
        Restore(_staged.State);
        Touch();
        _counters.Begun();
        await ReplyAsync(new BackupBegin(stream, _credit), cancellationToken);
    }

    private async Task DataAsync(ulong sequence, DataFrame frame, CancellationToken cancellationToken)
    {
        await LoadAsync(cancellationToken);
        if (Request is not { } request || request.Stream != frame.Stream)
            throw new FrameRefusal(WireErrorCode.UnknownStream, $"{_agent}/{_volume} has no open stream {frame.Stream}");
        Touch();
        if (sequence == 0)
            throw new FrameRefusal(WireErrorCode.Malformed, "data frames are numbered from 1");
        if (sequence <= _applied)
        {
            _counters.Duplicate();
            await ReplyAsync(new Ack(request.Stream, _durable, _durablePosition), cancellationToken);
            return;
        }
        // Credit first: an agent that honours it never exceeds it, even across a restart of this
        // receiver (credit is durable + window, and durable survives), so this is a misbehaving peer.
        if (sequence > _credit)
            throw new FrameRefusal(WireErrorCode.CreditExceeded, $"data frame {sequence} of stream {request.Stream} is beyond the credit granted, {_credit}");
        if (sequence > _applied + 1)
        {
            await ErrorAsync(WireErrorCode.OutOfSequence, $"data frame {sequence} of stream {request.Stream} is beyond the next expected, {_applied + 1}", request.Stream, sequence, cancellationToken);
            await MakeDurableAsync(cancellationToken);
            await ReplyAsync(new Resume(request.Stream, _durable, _durablePosition, _credit), cancellationToken);
            return;
        }
        CheckExtents(frame, request);

        var frameData = _frameData.Rent();
        try
        {
            Verify(frame, request, frameData.Memory.Span);
            // The previous frame's writes end before this one's begin: the store sees them in order.
            await SettleWritesAsync();
        }
        catch
        {
            frameData.Dispose();
            throw;
        }
        _writing = WriteAsync(_staged!, frame, frameData);
        _applied = sequence;
        _appliedPosition = frame.End;
        _changedBytes += frame.DataLength;
        _sinceDurable++;
        if (_sinceDurable >= _options.DurableEvery)
        {
            await MakeDurableAsync(cancellationToken);
            await ReplyAsync(new Ack(request.Stream, _durable, _durablePosition), cancellationToken);
            await ReplyAsync(new Credit(request.Stream, _credit), cancellationToken);
        }
        if (_pendingCommit is { } pending && pending.Commit.LastSequence == _applied)
        {
            _pendingCommit = null;
            await CommitAsync(pending.Sequence, pending.Commit, cancellationToken);
        }
    }

    /// <summary>
    /// Applies a verified frame to the staging: its data extents as one write (their bytes lie one
    /// after the other in <paramref name="frameData"/>, so the store can place their new blocks side
    /// by side), then its zero and discard extents (extents never overlap). Runs in the background;
    /// not cancelled (a frame's writes are short, and whoever waits for them needs them finished).
    /// </summary>
    private Task WriteAsync(IStagedPoint staged, DataFrame frame, AlignedBuffer frameData)
    {
        // The block hashes are copied: the frame's payload belongs to the message, which is the
        // transport's again once this call returns.
        var hashes = new byte[frame.Extents.Sum(e => e.Hashes.Length)];
        var writes = new List<StagedWrite>(frame.Extents.Count);
        var zeros = new List<WireExtent>();
        int at = 0, hashesAt = 0;
        foreach (var e in frame.Extents)
        {
            if (e.Kind == ExtentKind.Data)
            {
                e.Hashes.CopyTo(hashes.AsMemory(hashesAt));
                writes.Add(new StagedWrite(e.Offset, (int)e.Length, hashes.AsMemory(hashesAt, e.Hashes.Length)));
                hashesAt += e.Hashes.Length;
                at += (int)e.Length;
            }
            else
            {
                zeros.Add(e);
            }
        }
        long dataLength = frame.DataLength;
        return Task.Run(async () =>
        {
            using (frameData)
            {
                if (writes.Count > 0)
                    await staged.WriteAsync(writes, frameData.Memory[..at], CancellationToken.None);
                foreach (var e in zeros)
                    await staged.ZeroAsync(e.Offset, e.Length, e.Kind == ExtentKind.Discard, CancellationToken.None);
            }
            _counters.Applied(dataLength);
        });
    }

    /// <summary>
    /// Waits for the last frame's writes. If they failed, the staging's state is unknown: it is
    /// forgotten (reloaded at its durable state next time) and the failure is this call's.
    /// </summary>
    private async ValueTask SettleWritesAsync()
    {
        if (_writing is not { } writing)
            return;
        _writing = null;
        try
        {
            await writing;
        }
        catch
        {
            await ForgetAsync();
            throw;
        }
    }

    private async Task CommitAsync(ulong sequence, Commit commit, CancellationToken cancellationToken)
    {
        await LoadAsync(cancellationToken);
        if (Request is not { } request || request.Stream != commit.Stream)
        {
            var point = _store.ListPoints(_agent, _volume).LastOrDefault(p => p.Stream == commit.Stream)
                ?? throw new FrameRefusal(WireErrorCode.UnknownStream, $"{_agent}/{_volume} has no open or committed stream {commit.Stream}");
            await ReplyAsync(new CommitAck(point.Stream, point.Id, point.Digest), cancellationToken);
            return;
        }
        Touch();
        if (sequence != commit.LastSequence + 1)
            throw new FrameRefusal(WireErrorCode.Malformed, $"a commit after data frame {commit.LastSequence} must be frame {commit.LastSequence + 1}, not {sequence}");
        if (commit.LastSequence < _applied)
            throw new FrameRefusal(WireErrorCode.Malformed, $"the commit ends stream {request.Stream} at data frame {commit.LastSequence}, but frames up to {_applied} were received");
        if (commit.LastSequence > _applied)
        {
            // Data and control travel on different subjects, so a commit may overtake the last frames:
            // it is carried out when they arrive (or dropped by a new offer if they never do).
            _pendingCommit = (sequence, commit);
            return;
        }
        await MakeDurableAsync(cancellationToken);
        var digest = _staged!.ComputeDigest();
        if (!digest.AsSpan().SequenceEqual(commit.ImageDigest))
        {
            // A wrong image must never become a point, and resuming would only repeat it: drop it.
            await _staged.AbandonAsync(cancellationToken);
            await ForgetAsync();
            throw new FrameRefusal(WireErrorCode.DigestMismatch,
                $"the staged image of stream {request.Stream} has digest {Convert.ToHexStringLower(digest)}, the commit says {Convert.ToHexStringLower(commit.ImageDigest)}; the staging is dropped");
        }
        var published = await _staged.PublishAsync(digest, cancellationToken);
        await ForgetAsync();
        _counters.Committed();
        await ReplyAsync(new CommitAck(request.Stream, published.Id, digest), cancellationToken);
    }

    /// <summary>Checks a data frame's extents against the offer: alignment, size, hash counts, position.</summary>
    private void CheckExtents(DataFrame frame, StagingRequest request)
    {
        if (frame.Extents[0].Offset < _appliedPosition)
            throw new FrameRefusal(WireErrorCode.OutOfSequence, $"the frame's first extent at {frame.Extents[0].Offset} is behind the stream's position {_appliedPosition}");
        for (int i = 0; i < frame.Extents.Count; i++)
        {
            var e = frame.Extents[i];
            string? wrong =
                e.End > request.Size ? $"ends at {e.End}, past the image size {request.Size}" :
                e.Offset % request.BlockSize != 0 ? $"does not start on a {request.BlockSize}-byte block" :
                e.Length % request.BlockSize != 0 && e.End != request.Size ? $"is not a whole number of {request.BlockSize}-byte blocks and does not end at the image size" :
                e.Kind == ExtentKind.Data && e.HashCount != BlockHashes.Count(e.Length, request.BlockSize) ? $"carries {e.HashCount} block hashes for {BlockHashes.Count(e.Length, request.BlockSize)} blocks" :
                null;
            if (wrong is not null)
                throw new FrameRefusal(WireErrorCode.Malformed, $"extent {i} ({e.Kind} at {e.Offset}, {e.Length} bytes) {wrong}");
        }
    }

    /// <summary>Decompresses every data extent into <paramref name="buffer"/>, one after the other, and checks each block's hash.</summary>
    private void Verify(DataFrame frame, StagingRequest request, Span<byte> buffer)
    {
        int at = 0;
        for (int i = 0; i < frame.Extents.Count; i++)
        {
            var e = frame.Extents[i];
            if (e.Kind != ExtentKind.Data)
                continue;
            int length = (int)e.Length;
            var data = buffer.Slice(at, length);
            int produced;
            try
            {
                produced = _zstd.Decompress(e.Payload.Span, data, length);
            }
            catch (ZstdException z)
            {
                throw new FrameRefusal(WireErrorCode.PayloadCorrupt, $"extent {i} at {e.Offset}: {z.Message}");
            }
            if (produced != length)
                throw new FrameRefusal(WireErrorCode.PayloadCorrupt, $"extent {i} at {e.Offset} decompresses to {produced} bytes, not {length}");
            int bad = BlockHashes.FindMismatch(data, request.BlockSize, e.Hashes.Span);
            if (bad >= 0)
                throw new FrameRefusal(WireErrorCode.BlockHashMismatch,
                    $"block {e.Offset / request.BlockSize + bad} (image offset {e.Offset + (long)bad * request.BlockSize}) of extent {i} does not match its hash");
            at += length;
        }
    }

    /// <summary>After a start or a failure: picks up the store's unfinished staging, if any, at its durable state.</summary>
    private async ValueTask LoadAsync(CancellationToken cancellationToken)
    {
        if (_loaded)
            return;
        if (_store.FindStaging(_agent, _volume) is not null)
        {
            _staged = await _store.ResumeStagingAsync(_agent, _volume, cancellationToken);
            Restore(_staged.State);
            Touch();
        }
        _loaded = true;
    }

    private void Restore(StagingState state)
    {
        _applied = _durable = state.DurableSequence;
        _appliedPosition = _durablePosition = state.DurablePosition;
        _changedBytes = state.ChangedBytes;
        _sinceDurable = 0;
        _pendingCommit = null;
        _credit = _durable + (ulong)_options.CreditWindow;
    }

    private async ValueTask MakeDurableAsync(CancellationToken cancellationToken)
    {
        await SettleWritesAsync();
        if (_staged is null || (_applied == _durable && _sinceDurable == 0))
            return;
        await _staged.MakeDurableAsync(_applied, _appliedPosition, _changedBytes, cancellationToken);
        _durable = _applied;
        _durablePosition = _appliedPosition;
        _sinceDurable = 0;
        _credit = _durable + (ulong)_options.CreditWindow;
    }

    private async ValueTask ForgetAsync()
    {
        if (_writing is { } writing)
        {
            _writing = null;
            await writing.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing); // its failure is forgotten with the staging
        }
        var staged = _staged;
        _staged = null;
        _loaded = false;
        _pendingCommit = null;
        if (staged is not null)
            await staged.DisposeAsync();
    }

    private void Touch() => _lastActivity = _time.GetTimestamp();

    private static ulong NewStreamId(ulong? avoid)
    {
        Span<byte> bytes = stackalloc byte[8];
        ulong id;
        do
        {
            RandomNumberGenerator.Fill(bytes);
            id = BitConverter.ToUInt64(bytes) >> 1; // a positive int64 too, for stores that keep it signed
        }
        while (id == 0 || id == avoid);
        return id;
    }

    private async ValueTask ErrorAsync(WireErrorCode code, string message, ulong? stream, ulong? about, CancellationToken cancellationToken)
    {
        _counters.Error(code);
        await ReplyAsync(new ErrorReply(code, Clip(message), stream == 0 ? null : stream, about), cancellationToken);
    }

    private async ValueTask ReplyAsync(ReplicationMessage message, CancellationToken cancellationToken)
    {
        if (_options.Log is { } log && Describe(message) is { } line)
            log($"{_agent}/{_volume}: {line}");
        var bytes = _encoder.Encode(++_replies, message);
        try
        {
            await _transport.PublishAsync(_replySubject, bytes, cancellationToken: cancellationToken);
        }
        catch (TransportException)
        {
            // Lost like any reply; the agent's timeout brings it back with an offer.
        }
    }

    /// <summary>A reply as the receiver's log says it, in an operator's words; null for the routine ones (acks, credit).</summary>
    internal static string? Describe(ReplicationMessage message) => message switch
    {
        Ack or Credit => null,
        BackupBegin b => $"backup begins: stream {b.Stream}, credit up to frame {b.CreditUpTo}",
        Resume r => $"resume: stream {r.Stream} after frame {r.AfterSequence} (byte {r.Position}), credit up to frame {r.CreditUpTo}",
        CommitAck c => $"committed: stream {c.Stream}, point {c.Point}, digest {Convert.ToHexStringLower(c.ImageDigest)}",
        ErrorReply e => $"refused ({e.Code}){(e.Stream is { } s ? $" stream {s}" : "")}{(e.About is { } a ? $" frame {a}" : "")}: {e.Message}",
        _ => message.GetType().Name,
    };

    /// <summary>Error text within the protocol's limit, cut on a character boundary.</summary>
    internal static string Clip(string text)
    {
        if (Encoding.UTF8.GetByteCount(text) <= WireProtocol.MaxTextBytes)
            return text;
        int length = Math.Min(text.Length, WireProtocol.MaxTextBytes);
        while (Encoding.UTF8.GetByteCount(text.AsSpan(0, length)) > WireProtocol.MaxTextBytes - 3)
            length--;
        if (length > 0 && char.IsHighSurrogate(text[length - 1]))
            length--;
        return string.Concat(text.AsSpan(0, length), "…");
    }
}
