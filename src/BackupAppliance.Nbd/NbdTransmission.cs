using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using BackupAppliance.Core;

namespace BackupAppliance.Nbd;

/// <summary>
/// The transmission phase of one connection (nbdkit's protocol.c and protocol-receive.c): a loop on
/// the connection's thread reads request headers (and WRITE payloads) with blocking reads, judges
/// each with <see cref="NbdRequestValidator"/>, and starts it on that thread: a request the volume
/// completes at once (a read or an overwrite from the page cache) is answered before the next
/// header is read, without a thread hand-off; one that has to wait (a copy-on-write, a commit, a
/// full socket) returns to the loop at its first wait and finishes on the thread pool. Up to
/// <see cref="NbdServerOptions.MaxInFlightPerConnection"/> requests, holding up to
/// <see cref="NbdServerOptions.MaxInFlightBytesPerConnection"/> data bytes (<see cref="InFlightBytes"/>),
/// are in flight at once and answer in whatever order they finish, through <see cref="NbdReplyWriter"/>.
/// The loop ends on NBD_CMD_DISC, end of stream, a protocol violation, a failed reply or a stop;
/// requests in flight are always finished before it returns.
/// </summary>
internal sealed class NbdTransmission
{
    /// <summary>Most bytes one BLOCK_STATUS looks at; the client asks again from where the reply stops.</summary>
    internal const long MaxStatusQueryLength = 1L << 30;

    /// <summary>Reads up to this size are sent header and data in one write.</summary>
    internal const int SingleWriteReadLimit = 64 * 1024;

    /// <summary>Most descriptors in one BLOCK_STATUS chunk (the protocol's recommended ceiling).</summary>
    internal const int MaxStatusDescriptors = 1 << 20;

    private readonly Socket _socket;
    private readonly NbdStreamReader _reader;
    private readonly NbdSession _session;
    private readonly NbdServerOptions _options;
    private readonly NbdReplyWriter _replies;
    private readonly SemaphoreSlim _slots;
    private readonly InFlightBytes _bytes;

    // The reply pipe of lent reads (see ReadLentAsync): made on first use, taken by one reply at a
    // time (_pipeTaken), dropped when a reply leaves it dirty; _lending false once it cannot be had.
    private SplicePipe? _pipe;
    private int _pipeTaken;
    private bool _lending;

    /// <summary>Cancelled when a reply cannot be sent: the peer is gone, stop reading.</summary>
    private readonly CancellationTokenSource _broken = new();

    public NbdTransmission(NetworkStream stream, NbdStreamReader reader, NbdSession session, NbdServerOptions options)
    {
        _socket = stream.Socket;
        _reader = reader;
        _session = session;
        _options = options;
        _replies = new NbdReplyWriter(stream, session.StructuredReplies);
        _slots = new SemaphoreSlim(options.MaxInFlightPerConnection, options.MaxInFlightPerConnection);
        _bytes = new InFlightBytes(options.MaxInFlightBytesPerConnection);
        // TCP sockets only: splicing into a Unix socket is not tested yet (those reads are copied).
        _lending = options.LendReads && _socket.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6;
    }

    /// <summary>
    /// Serves requests until the connection ends, on the calling thread (the connection's own).
    /// <paramref name="stopReading"/> stops taking new requests (server shutdown);
    /// <paramref name="abort"/> also cancels those in flight.
    /// </summary>
    public void Run(CancellationToken stopReading, CancellationToken abort)
    {
        using var reading = CancellationTokenSource.CreateLinkedTokenSource(stopReading, _broken.Token);
        // A blocking read sees no token: stopping ends it by shutting the socket's receiving side
        // (the read then sees the end of the stream); replies can still be sent.
        using var unblock = reading.Token.Register(static s => ShutdownReceiving((Socket)s!), _socket);
        var header = new byte[NbdConstants.RequestHeaderLength];
        try
        {
            while (ReceiveOne(header, abort, reading.Token))
            {
            }
        }
        catch (Exception e) when (reading.IsCancellationRequested && e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // Stopped while reading.
        }
        finally
        {
            // Everything in flight is answered (or abandoned on abort) before the connection closes.
            for (int i = 0; i < _options.MaxInFlightPerConnection; i++)
                _slots.Wait(abort);
            _broken.Dispose();
            _bytes.Dispose();
            _pipe?.Dispose();
        }
    }

    /// <summary>Reads and dispatches one request; false when the loop should end.</summary>
    private bool ReceiveOne(byte[] header, CancellationToken abort, CancellationToken reading)
    {
        _slots.Wait(reading);
        byte[]? payload = null;
        long bytes = 0;
        bool dispatched = false;
        try
        {
            _reader.ReadExactly(header);
            var request = NbdRequest.Parse(header);
            var check = NbdRequestValidator.Check(request, _session, _options.MaxRequestSize);
            if (check.Action is NbdRequestAction.Close or NbdRequestAction.Disconnect)
                return false;

            if (check.Action != NbdRequestAction.Refuse && request.Type is NbdConstants.CmdRead or NbdConstants.CmdWrite)
            {
                // Before its payload is read: the connection stops reading while the bytes in flight are at their limit.
                _bytes.Take(request.Length, reading);
                bytes = request.Length;
            }
            if (request.Type == NbdConstants.CmdWrite)
            {
                // A refused write's payload is read and dropped so the next header is where it should be.
                if (check.Action == NbdRequestAction.Refuse)
                {
                    _reader.Skip(request.Length);
                }
                else
                {
                    payload = ArrayPool<byte>.Shared.Rent((int)request.Length);
                    _reader.ReadExactly(payload.AsSpan(0, (int)request.Length));
                }
            }

            // Runs here until its first wait that does not complete at once; it returns the payload
            // and the slot itself, so the loop goes on to the next header either way.
            _ = ExecuteAsync(request, check, payload, bytes, abort);
            dispatched = true;
            return true;
        }
        finally
        {
            if (!dispatched)
                EndRequest(payload, bytes);
        }
    }

    private static void ShutdownReceiving(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Receive);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed: the read has ended anyway.
        }
    }

    /// <summary>Runs one request and sends its reply; never throws.</summary>
    private async Task ExecuteAsync(NbdRequest request, NbdRequestCheck check, byte[]? payload, long bytes, CancellationToken abort)
    {
        try
        {
            if (check.Action == NbdRequestAction.Refuse)
            {
                _replies.SendError(request.Cookie, check.Error, check.Reason ?? "invalid request");
                return;
            }
            switch (request.Type)
            {
                case NbdConstants.CmdRead:
                    await ReadAsync(request, abort).ConfigureAwait(false);
                    break;
                case NbdConstants.CmdBlockStatus:
                    await BlockStatusAsync(request, abort).ConfigureAwait(false);
                    break;
                default:
                    await StatusCommandAsync(request, payload, abort).ConfigureAwait(false);
                    break;
            }
        }
        catch (Exception e)
        {
            // Only sending can get here: the peer is gone or the server is aborting. Stop reading.
            if (e is not (IOException or ObjectDisposedException or OperationCanceledException))
                _options.ConnectionError?.Invoke(e);
            TryCancel(_broken);
        }
        finally
        {
            EndRequest(payload, bytes);
        }
    }

    /// <summary>What a request held, given back: its payload buffer, its data bytes, its slot.</summary>
    private void EndRequest(byte[]? payload, long bytes)
    {
        if (payload is not null)
            ArrayPool<byte>.Shared.Return(payload);
        if (bytes > 0)
            _bytes.Give(bytes);
        _slots.Release();
    }

    /// <summary>WRITE, FLUSH, TRIM, WRITE_ZEROES: run the volume call, answer with its status.</summary>
    private async ValueTask StatusCommandAsync(NbdRequest request, byte[]? payload, CancellationToken cancellationToken)
    {
        (uint Error, string Message)? failure = null;
        try
        {
            // Inside the try: a volume may throw before it returns a task.
            await CallVolumeAsync(request, payload, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            failure = Fail(e);
        }
        if (failure is { } f)
            _replies.SendError(request.Cookie, f.Error, f.Message);
        else
            _replies.SendSuccess(request.Cookie);
    }

    private ValueTask CallVolumeAsync(NbdRequest request, byte[]? payload, CancellationToken cancellationToken)
    {
        var volume = _session.Volume;
        long offset = (long)request.Offset;
        return request.Type switch
        {
            NbdConstants.CmdWrite => volume.WriteAsync(offset, payload.AsMemory(0, (int)request.Length), request.Fua, cancellationToken),
            NbdConstants.CmdFlush => volume.FlushAsync(cancellationToken),
            NbdConstants.CmdTrim => volume.DiscardAsync(offset, request.Length, request.Fua, cancellationToken),
            NbdConstants.CmdWriteZeroes => volume.WriteZeroesAsync(offset, request.Length, request.HasFlag(NbdConstants.CmdFlagNoHole), request.Fua, cancellationToken),
            _ => throw new InvalidOperationException($"command {request.Type} passed validation but has no handler"),
        };
    }

    private async ValueTask ReadAsync(NbdRequest request, CancellationToken cancellationToken)
    {
        int length = (int)request.Length;
        if (length > SingleWriteReadLimit && _lending && TakePipe() is { } pipe)
        {
            bool answered = false;
            try
            {
                if (pipe.Fits(request.Offset, length))
                    answered = await ReadLentAsync(request, pipe, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                ReturnPipe(pipe);
            }
            if (answered)
                return;
        }
        // Small reads leave room for the header and go out in one write; large ones rent exactly
        // their length (pool buckets are powers of two) and send the header separately.
        int dataOffset = length <= SingleWriteReadLimit ? _replies.ReadDataOffset : 0;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(dataOffset + length);
        try
        {
            (uint Error, string Message)? failure = null;
            try
            {
                await _session.Volume.ReadAsync((long)request.Offset, buffer.AsMemory(dataOffset, length), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                failure = Fail(e);
            }
            if (failure is { } f)
                _replies.SendError(request.Cookie, f.Error, f.Message);
            else
                _replies.SendRead(request.Cookie, request.Offset, buffer, dataOffset, length);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// A read the volume lends instead of copying (<see cref="IBlockVolume.TryLendAsync"/>): its
    /// pieces are spliced into the reply pipe, then from the pipe into the socket, so the server
    /// never copies the data. False, with nothing sent, when the volume does not lend the range or
    /// a piece does not fit the pipe: the caller copies instead.
    /// </summary>
    private async ValueTask<bool> ReadLentAsync(NbdRequest request, SplicePipe pipe, CancellationToken cancellationToken)
    {
        bool lent;
        try
        {
            lent = await _session.Volume.TryLendAsync((long)request.Offset, (int)request.Length, pipe, cancellationToken).ConfigureAwait(false);
        }
        catch (PipeFullException)
        {
            DropPipe();
            return false;
        }
        catch (Exception e)
        {
            if (pipe.Filled > 0)
                DropPipe();
            var (error, message) = Fail(e);
            _replies.SendError(request.Cookie, error, message);
            return true;
        }
        if (!lent)
            return false;
        if (pipe.Filled != (int)request.Length)
        {
            DropPipe();
            throw new InvalidOperationException($"volume {_session.Volume.Name} lent {pipe.Filled} bytes for a read of {request.Length}");
        }
        try
        {
            _replies.SendRead(request.Cookie, request.Offset, pipe);
        }
        catch
        {
            DropPipe();
            throw;
        }
        return true;
    }

    /// <summary>The connection's reply pipe if no other reply has it (made on first use); null to copy instead.</summary>
    private SplicePipe? TakePipe()
    {
        if (Interlocked.Exchange(ref _pipeTaken, 1) != 0)
            return null;
        _pipe ??= SplicePipe.TryCreate();
        if (_pipe is null)
        {
            _lending = false;
            Volatile.Write(ref _pipeTaken, 0);
        }
        return _pipe;
    }

    private void ReturnPipe(SplicePipe pipe)
    {
        if (pipe != _pipe)
            pipe.Dispose();
        Volatile.Write(ref _pipeTaken, 0);
    }

    /// <summary>Forgets a pipe that holds bytes no reply will send; the next lent read makes a new one.</summary>
    private void DropPipe() => _pipe = null;

    /// <summary>base:allocation: holes are NBD_STATE_HOLE|NBD_STATE_ZERO, mapped data is 0.</summary>
    private async ValueTask BlockStatusAsync(NbdRequest request, CancellationToken cancellationToken)
    {
        long offset = (long)request.Offset;
        long length = Math.Min(request.Length, MaxStatusQueryLength);
        IReadOnlyList<VolumeExtent> extents;
        try
        {
            extents = await _session.Volume.GetAllocationAsync(offset, length, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            var (error, message) = Fail(e);
            _replies.SendError(request.Cookie, error, message);
            return;
        }

        bool one = request.HasFlag(NbdConstants.CmdFlagReqOne);
        int capacity = one ? 1 : Math.Clamp(extents.Count, 1, MaxStatusDescriptors);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(NbdReplyWriter.StatusDataOffset + 8 * capacity);
        try
        {
            int count = EncodeDescriptors(extents, offset, length, one, buffer.AsSpan(NbdReplyWriter.StatusDataOffset, 8 * capacity));
            _replies.SendBlockStatus(request.Cookie, NbdConstants.BaseAllocationContextId, buffer, count);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Descriptors for the extents that continue consecutively from <paramref name="offset"/>,
    /// clipped to the query and merged where the status repeats. If the volume offers nothing
    /// usable, one descriptor of status 0 ("allocated, contents unknown") is always safe.
    /// </summary>
    internal static int EncodeDescriptors(IReadOnlyList<VolumeExtent> extents, long offset, long length, bool one, Span<byte> destination)
    {
        int max = destination.Length / 8, count = 0;
        long cursor = offset, end = offset + length;
        uint lastStatus = 0;
        foreach (var extent in extents)
        {
            if (extent.Offset != cursor || extent.Length <= 0 || cursor >= end)
                break;
            long run = Math.Min(extent.Length, end - cursor);
            uint status = extent.IsHole ? NbdConstants.StateHole | NbdConstants.StateZero : 0;
            if (count > 0 && status == lastStatus)
            {
                var previous = destination.Slice(8 * (count - 1), 4);
                BinaryPrimitives.WriteUInt32BigEndian(previous, (uint)(BinaryPrimitives.ReadUInt32BigEndian(previous) + run));
            }
            else
            {
                if (count == max)
                    break;
                BinaryPrimitives.WriteUInt32BigEndian(destination[(8 * count)..], (uint)run);
                BinaryPrimitives.WriteUInt32BigEndian(destination[(8 * count + 4)..], status);
                lastStatus = status;
                count++;
            }
            cursor += run;
        }
        if (count == 0)
        {
            BinaryPrimitives.WriteUInt32BigEndian(destination, (uint)length);
            BinaryPrimitives.WriteUInt32BigEndian(destination[4..], 0);
            count = 1;
        }
        return count;
    }

    private (uint Error, string Message) Fail(Exception e)
    {
        if (NbdErrorMapping.IsUnexpected(e))
            _options.ConnectionError?.Invoke(e);
        return NbdErrorMapping.FromException(e);
    }

    private static void TryCancel(CancellationTokenSource cts)
    {
        try
        {
            cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }
}
