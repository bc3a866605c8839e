using System.Threading.Channels;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Sending;

/// <summary>
/// One backup in progress: the sender's state machine. Offer → (begin | resume | commit_ack); a
/// stream sends frames while it has credit, moves its window on acks and credits, goes back to an
/// earlier frame when the receiver refuses one or asks to resume, and commits after the last frame.
/// Silence longer than the ack timeout ends the stream's attempt: the same offer is sent again and
/// the receiver's answer says where to go on.
/// </summary>
internal sealed class BackupTransfer : IAsyncDisposable
{
    /// <summary>An error's <c>about</c> that was not given: never taken for a stale reply.</summary>
    private const ulong Unknown = ulong.MaxValue;

    private readonly ITransport _transport;
    private readonly IBackupSource _source;
    private readonly BackupOffer _offer;
    private readonly BackupSenderOptions _options;
    private readonly TimeProvider _time;
    private readonly IProgress<BackupProgress>? _progress;
    private readonly string _control;
    private readonly string _data;
    private readonly string _reply;
    private readonly Channel<TransportMessage> _replies = Channel.CreateBounded<TransportMessage>(
        new BoundedChannelOptions(1024) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly FrameEncoder _encoder = new();
    private readonly DataFrameBuilder _builder;
    private readonly long[] _changedBefore;
    private readonly long[] _dataBefore;
    private readonly long _started;
    private IAsyncDisposable? _subscription;

    // The stream's window: frames _acked+1 … _next-1 are in flight; frames up to _credit may be sent.
    private ulong _stream;
    private ulong _next;
    private ulong _credit;
    private ulong _acked;
    private long _ackedPosition;
    private ulong _highestSent;
    private bool _commitSent;
    private readonly Dictionary<ulong, long> _frameStarts = new();

    // Replies to frames sent before a go-back arrive after it and must not cause another.
    private bool _wentBack;
    private ulong _highestBeforeGoBack;
    private ulong? _outOfSequenceAbout;

    private int _attempts;
    private long _wireBytes;
    private long _dataBytes;
    private bool _resumed;
    // Where the time went (see BackupTimings), in TimeProvider ticks.
    private long _framing, _publishing, _waitingForReceiver, _committing;
    private byte[]? _digest;
    private CommitAck? _committed;

    public BackupTransfer(ITransport transport, IBackupSource source, BackupOffer offer, BackupSenderOptions options, TimeProvider time, IProgress<BackupProgress>? progress)
    {
        _transport = transport;
        _source = source;
        _offer = offer;
        _options = options;
        _time = time;
        _progress = progress;
        _control = ReplicationSubjects.Control(source.Agent, source.Volume);
        _data = ReplicationSubjects.Data(source.Agent, source.Volume);
        _reply = ReplicationSubjects.Reply(source.Agent, source.Volume);
        _builder = new DataFrameBuilder(source, options.CompressionLevel, options.CompressionThreads);
        var ranges = source.Ranges;
        _changedBefore = new long[ranges.Count + 1];
        _dataBefore = new long[ranges.Count + 1];
        for (int i = 0; i < ranges.Count; i++)
        {
            _changedBefore[i + 1] = _changedBefore[i] + ranges[i].Length;
            _dataBefore[i + 1] = _dataBefore[i] + (ranges[i].Kind == SourceRangeKind.Data ? ranges[i].Length : 0);
        }
        _started = time.GetTimestamp();
    }

    private long ChangedBytes => _changedBefore[^1];

    public async Task<BackupResult> RunAsync(CancellationToken cancellationToken)
    {
        // Subscribe before offering: the answer may come at once.
        _subscription = await _transport.SubscribeAsync(_reply, _replies.Writer, cancellationToken);
        while (true)
        {
            var answer = await OfferAsync(cancellationToken);
            var committed = answer switch
            {
                CommitAck done => done,
                BackupBegin begin => await StreamAsync(begin.Stream, 0, 0, begin.CreditUpTo, cancellationToken),
                Resume resume => await StreamAsync(resume.Stream, resume.AfterSequence, resume.Position, resume.CreditUpTo, cancellationToken),
                _ => null,
            };
            if (committed is not null)
                return await FinishAsync(committed, cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_subscription is not null)
            await _subscription.DisposeAsync();
        _encoder.Dispose();
        await _builder.DisposeAsync();
    }

    /// <summary>Offers until the receiver answers begin, resume or commit_ack.</summary>
    private async Task<ReplicationMessage> OfferAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            CheckDeadline();
            if (_attempts >= _options.MaxAttempts)
                throw new TimeoutException($"backup of {_source.Agent}/{_source.Volume}: no progress after {_attempts} offers (offer timeout {_options.OfferTimeout}, ack timeout {_options.AckTimeout})");
            _attempts++;
            Report("offering");
            await PublishAsync(_control, 0, _offer, cancellationToken);
            long offered = _time.GetTimestamp();
            while (await NextReplyAsync(offered, _options.OfferTimeout, cancellationToken) is { } reply)
            {
                switch (reply.Message)
                {
                    case BackupBegin or Resume:
                        _resumed |= reply.Message is Resume;
                        return reply.Message;
                    case CommitAck:
                        return reply.Message;
                    case ErrorReply { Stream: null } error when IsTerminal(error.Code):
                        throw Refused(error);
                    case ErrorReply { Stream: null, Code: WireErrorCode.Busy or WireErrorCode.Internal }:
                        await Task.Delay(_options.RetryDelay, _time, cancellationToken);
                        goto offerAgain;
                }
                // Anything else is a late reply to an earlier stream's frames.
            }
        offerAgain:;
        }
    }

    /// <summary>Runs a stream from data frame <paramref name="after"/> + 1 at image offset <paramref name="position"/>; null: offer again.</summary>
    private async Task<CommitAck?> StreamAsync(ulong stream, ulong after, long position, ulong credit, CancellationToken cancellationToken)
    {
        _stream = stream;
        _next = after + 1;
        _acked = after;
        _ackedPosition = position;
        _highestSent = after;
        _credit = credit;
        _commitSent = false;
        _committed = null;
        _wentBack = false;
        _outOfSequenceAbout = null;
        _frameStarts.Clear();
        _builder.Seek(position);
        await _builder.HashUpToAsync(position, cancellationToken);
        Report("sending");
        long quietSince = _time.GetTimestamp();
        while (true)
        {
            CheckDeadline();
            while (_replies.Reader.TryRead(out var message))
            {
                switch (await HandleAsync(message, cancellationToken))
                {
                    case StreamStep.Progress:
                        quietSince = _time.GetTimestamp();
                        break;
                    case StreamStep.Committed:
                        return _committed;
                    case StreamStep.OfferAgain:
                        return null;
                }
            }
            if (!_builder.Done && _next <= _credit)
            {
                await SendNextFrameAsync(cancellationToken);
                continue;
            }
            if (_builder.Done && !_commitSent)
                await SendCommitAsync(cancellationToken);
            long waitStart = _time.GetTimestamp();
            bool replied = await WaitForReplyAsync(quietSince, _options.AckTimeout, cancellationToken);
            if (_builder.Done)
                Count(ref _committing, waitStart); // every frame is out: the commit is awaited
            else
                Count(ref _waitingForReceiver, waitStart); // out of credit
            if (!replied)
            {
                Report("waiting");
                return null;
            }
        }
    }

    private async ValueTask<StreamStep> HandleAsync(TransportMessage message, CancellationToken cancellationToken)
    {
        if (Decode(message) is not { } frame)
            return StreamStep.None;
        switch (frame.Message)
        {
            case Credit c when c.Stream == _stream && c.UpTo > _credit:
                _credit = c.UpTo;
                return StreamStep.Progress;
            case Ack a when a.Stream == _stream && a.DurableSequence > _acked:
                _acked = a.DurableSequence;
                _ackedPosition = a.Position;
                foreach (var seq in _frameStarts.Keys.Where(k => k <= _acked).ToList())
                    _frameStarts.Remove(seq);
                _attempts = 0;
                Report(_commitSent ? "committing" : "sending");
                return StreamStep.Progress;
            case CommitAck done when done.Stream == _stream:
                _committed = done;
                return StreamStep.Committed;
            case Resume r when r.Stream == _stream && _outOfSequenceAbout is { } about:
                _outOfSequenceAbout = null;
                GoBack(r.AfterSequence, r.Position, about, r.CreditUpTo);
                return StreamStep.None;
            case ErrorReply e when e.Stream is null || e.Stream == _stream:
                return await HandleErrorAsync(e, cancellationToken);
            default:
                return StreamStep.None; // a late or repeated answer to an offer, or another stream's reply
        }
    }

    private async ValueTask<StreamStep> HandleErrorAsync(ErrorReply e, CancellationToken cancellationToken)
    {
        if (IsTerminal(e.Code))
            throw Refused(e);
        ulong about = e.About ?? Unknown;
        switch (e.Code)
        {
            case WireErrorCode.OutOfSequence:
                // The resume that follows says where to go back to.
                _outOfSequenceAbout = about;
                break;
            case WireErrorCode.ChecksumMismatch or WireErrorCode.Truncated or WireErrorCode.PayloadCorrupt or WireErrorCode.BlockHashMismatch:
                if (e.About is { } bad && _frameStarts.TryGetValue(bad, out long start))
                    GoBack(bad - 1, start, about, null);
                else
                    GoBack(_acked, _ackedPosition, about, null);
                break;
            case WireErrorCode.CreditExceeded when e.About is { } over && _frameStarts.TryGetValue(over, out long overStart):
                if (GoBack(over - 1, overStart, about, null))
                    _credit = Math.Min(_credit, over - 1);
                break;
            case WireErrorCode.UnknownStream:
                return StreamStep.OfferAgain;
            case WireErrorCode.Internal:
                await Task.Delay(_options.RetryDelay, _time, cancellationToken);
                return StreamStep.OfferAgain;
        }
        return StreamStep.None;
    }

    /// <summary>
    /// Goes back to send frame <paramref name="after"/> + 1 from <paramref name="position"/>, unless
    /// nothing past it was sent or the request is about a frame sent before the last go-back (its
    /// reply was already on its way). Returns whether it went back.
    /// </summary>
    private bool GoBack(ulong after, long position, ulong about, ulong? credit)
    {
        if (after + 1 >= _next)
            return false;
        if (_wentBack && about <= _highestBeforeGoBack)
            return false;
        _wentBack = true;
        _highestBeforeGoBack = Math.Max(_highestSent, _next);
        _next = after + 1;
        _builder.Seek(position);
        _commitSent = false;
        if (credit is { } c)
            _credit = c;
        foreach (var seq in _frameStarts.Keys.Where(k => k > after).ToList())
            _frameStarts.Remove(seq);
        return true;
    }

    private async ValueTask SendNextFrameAsync(CancellationToken cancellationToken)
    {
        long start = _builder.Position;
        long began = _time.GetTimestamp();
        var frame = await _builder.NextAsync(_stream, cancellationToken);
        Count(ref _framing, began);
        if (frame is null)
            return;
        _frameStarts[_next] = start;
        _dataBytes += frame.DataLength;
        began = _time.GetTimestamp();
        await PublishAsync(_data, _next, frame, cancellationToken);
        Count(ref _publishing, began);
        _highestSent = Math.Max(_highestSent, _next);
        _next++;
    }

    private async ValueTask SendCommitAsync(CancellationToken cancellationToken)
    {
        long began = _time.GetTimestamp();
        await _builder.HashUpToAsync(_source.Size, cancellationToken);
        if (_digest is null)
        {
            _source.Hashes.Flush();
            _digest = _source.Hashes.ComputeDigest();
        }
        Count(ref _committing, began);
        Report("committing");
        await PublishAsync(_control, _next, new Commit(_stream, _next - 1, _digest), cancellationToken);
        _commitSent = true;
    }

    private async Task<BackupResult> FinishAsync(CommitAck done, CancellationToken cancellationToken)
    {
        await _builder.HashUpToAsync(_source.Size, cancellationToken);
        _source.Hashes.Flush();
        var digest = _digest ?? _source.Hashes.ComputeDigest();
        if (!digest.AsSpan().SequenceEqual(done.ImageDigest))
            throw new BackupRefusedException(WireErrorCode.DigestMismatch,
                $"point {done.Point} has digest {Convert.ToHexStringLower(done.ImageDigest)}, this snapshot's is {Convert.ToHexStringLower(digest)}",
                _source.Agent, _source.Volume);
        _ackedPosition = _source.Size;
        Report("done");
        return new BackupResult(done.Point, digest, ChangedBytes, _dataBytes, _wireBytes, _resumed, _time.GetElapsedTime(_started))
        {
            Timings = new BackupTimings(Span(_framing), Span(_publishing), Span(_waitingForReceiver), Span(_committing)),
        };
    }

    /// <summary>Adds the time since <paramref name="since"/> to <paramref name="total"/> (ticks).</summary>
    private void Count(ref long total, long since) => total += _time.GetTimestamp() - since;

    private TimeSpan Span(long ticks) => TimeSpan.FromSeconds((double)ticks / _time.TimestampFrequency);

    private async ValueTask PublishAsync(string subject, ulong sequence, ReplicationMessage message, CancellationToken cancellationToken)
    {
        var bytes = _encoder.Encode(sequence, message);
        try
        {
            await _transport.PublishAsync(subject, bytes, cancellationToken: cancellationToken);
        }
        catch (TransportException)
        {
            // A cut connection loses what is published, like the network would; acks tell.
        }
        _wireBytes += bytes.Length;
    }

    /// <summary>Waits until a reply is queued (true) or <paramref name="timeout"/> has passed since <paramref name="since"/> (false).</summary>
    private async ValueTask<bool> WaitForReplyAsync(long since, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var left = timeout - _time.GetElapsedTime(since);
        if (left <= TimeSpan.Zero)
            return false;
        using var timer = new CancellationTokenSource(left, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        try
        {
            return await _replies.Reader.WaitToReadAsync(linked.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>The next decodable reply, or null once <paramref name="timeout"/> has passed since <paramref name="since"/>.</summary>
    private async ValueTask<WireFrame?> NextReplyAsync(long since, TimeSpan timeout, CancellationToken cancellationToken)
    {
        while (await WaitForReplyAsync(since, timeout, cancellationToken))
        {
            if (_replies.Reader.TryRead(out var message) && Decode(message) is { } frame)
                return frame;
        }
        return null;
    }

    private static WireFrame? Decode(TransportMessage message)
    {
        try
        {
            return FrameDecoder.Decode(message.Payload);
        }
        catch (WireFormatException)
        {
            return null; // a damaged reply is as good as a lost one: timeouts cover both
        }
    }

    private void CheckDeadline()
    {
        if (_options.Deadline is { } deadline && _time.GetElapsedTime(_started) > deadline)
            throw new TimeoutException($"backup of {_source.Agent}/{_source.Volume} did not finish within its deadline of {deadline}");
    }

    private static bool IsTerminal(WireErrorCode code) => code is
        WireErrorCode.UnknownVolume or WireErrorCode.BaseMismatch or WireErrorCode.UnsupportedVersion
        or WireErrorCode.NoSpace or WireErrorCode.DigestMismatch or WireErrorCode.Malformed
        or WireErrorCode.Oversized or WireErrorCode.UnknownMessageType;

    private BackupRefusedException Refused(ErrorReply e) => new(e.Code, e.Message, _source.Agent, _source.Volume);

    private void Report(string phase)
    {
        _progress?.Report(new BackupProgress(ChangedBelow(_ackedPosition), ChangedBytes, ChangedBelow(_builder.Position), _wireBytes, phase)
        {
            DataDone = Below(_dataBefore, _ackedPosition, dataOnly: true),
            DataTotal = _dataBefore[^1],
        });
    }

    /// <summary>Bytes of the changed ranges below an image offset.</summary>
    private long ChangedBelow(long position) => Below(_changedBefore, position, dataOnly: false);

    /// <summary>Bytes of the ranges (of data ranges only, with <paramref name="dataOnly"/>) below an image offset, from their prefix sums.</summary>
    private long Below(long[] before, long position, bool dataOnly)
    {
        var ranges = _source.Ranges;
        int lo = DataFrameBuilder.FirstEndingAfter(ranges, position);
        long below = before[lo];
        if (lo < ranges.Count && ranges[lo].Offset < position && (!dataOnly || ranges[lo].Kind == SourceRangeKind.Data))
            below += position - ranges[lo].Offset;
        return below;
    }

    private enum StreamStep
    {
        None,
        Progress,
        Committed,
        OfferAgain,
    }
}
