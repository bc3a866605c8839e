using System.Runtime.InteropServices;
using BackupAppliance.Replication.Transport;
using NATS.Client;

namespace BackupAppliance.Transport.Nats;

/// <summary>
/// <see cref="ITransport"/> over core NATS with NATS.Client 0.8.0 (the only version our registry
/// serves). Fast dead-server detection through pings, reconnect with resubscription, user/password or
/// token authentication, TLS, and socket buffers tuned on every (re)connection
/// (<see cref="NatsSocketTuning"/>).
/// </summary>
public sealed class NatsTransport : ITransport
{
    private readonly NatsTransportOptions _options;
    private readonly TransportStateFeed _feed;
    private readonly NatsTlsValidation? _tls;
    private readonly TimeProvider _time;
    private IConnection? _connection;
    private NatsRequestInbox _requests = null!;
    private NatsSubscription? _requestSubscription;
    private int _disposed;
    private long _tunings;
    private volatile string? _tuningProblem;

    private NatsTransport(NatsTransportOptions options, TimeProvider time)
    {
        _options = options;
        _time = time;
        _feed = new TransportStateFeed(time);
        _tls = options.Tls ? new NatsTlsValidation(options) : null;
    }

    /// <summary>
    /// Validates <paramref name="options"/> and connects to the first server that answers. Fails with
    /// <see cref="NatsOptionsException"/> (bad options) or <see cref="TransportException"/> (no server,
    /// authentication refused, TLS refused), saying which.
    /// </summary>
    public static async Task<NatsTransport> ConnectAsync(NatsTransportOptions options, TimeProvider? time = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var transport = new NatsTransport(options, time ?? TimeProvider.System);
        var natsOptions = transport.BuildClientOptions();
        // The 0.8.0 client connects synchronously; keep it off the caller's thread.
        NatsThreadPoolReserve.Take();
        IConnection connection;
        try
        {
            connection = await OnOwnThread("nats-connect", () => transport.Open(natsOptions)).WaitAsync(cancellationToken);
        }
        catch
        {
            NatsThreadPoolReserve.Return();
            throw;
        }
        transport._connection = connection;
        try
        {
            transport.Tune(connection);
            transport._requests = new NatsRequestInbox(connection.NewInbox());
            transport._requestSubscription = transport.Subscribe(connection, transport._requests.Subject, transport._requests.OnReply);
        }
        catch (Exception e) when (e is NatsSocketTuningException or TransportException)
        {
            connection.Close();
            NatsThreadPoolReserve.Return();
            throw e is TransportException ? e : new TransportException($"NATS socket tuning failed, not connecting: {e.Message}", e);
        }
        transport._feed.Report(TransportState.Connected, $"connected to {connection.ConnectedUrl}");
        return transport;
    }

    public bool IsConnected => _connection?.State == ConnState.CONNECTED;

    public IObservable<TransportStateChange> StateChanges => _feed;

    /// <summary>The server this transport is connected to now, if any.</summary>
    public string? ConnectedUrl => _connection?.ConnectedUrl;

    /// <summary>How many times the socket tuning was applied (once per connection).</summary>
    public long SocketTuningCount => Interlocked.Read(ref _tunings);

    /// <summary>
    /// False while the current socket is not tuned as configured (e.g. the kernel capped its buffers);
    /// <see cref="SocketTuningProblem"/> says why. Always true with <c>SocketBufferSize = 0</c>.
    /// </summary>
    public bool SocketTuningInEffect => _tuningProblem is null;

    public string? SocketTuningProblem => _tuningProblem;

    /// <summary>The live socket's buffer sizes and NoDelay, as the kernel reports them now.</summary>
    public NatsSocketSettings InspectSocket() => NatsSocketTuning.Inspect(Connection);

    public ValueTask PublishAsync(string subject, ReadOnlyMemory<byte> payload, string? replyTo = null, CancellationToken cancellationToken = default)
    {
        Subjects.ValidatePublish(subject);
        if (replyTo is not null)
            Subjects.ValidatePublish(replyTo, nameof(replyTo));
        cancellationToken.ThrowIfCancellationRequested();
        var connection = Connection;
        try
        {
            // 0.8.0 writes into its buffered stream (or its reconnect buffer) before returning.
            connection.Publish(subject, replyTo, WholeArray(payload));
        }
        catch (NATSException e)
        {
            throw Describe($"publish to '{subject}'", e);
        }
        catch (Exception e) when (IsLostConnection(e))
        {
            // the payload may or may not have left
            throw LostWhileWriting($"publish to '{subject}'", e);
        }
        return ValueTask.CompletedTask;
    }

    public ValueTask<IAsyncDisposable> SubscribeAsync(string subject, TransportMessageHandler handler, CancellationToken cancellationToken = default)
    {
        Subjects.ValidateSubscribe(subject);
        ArgumentNullException.ThrowIfNull(handler);
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult<IAsyncDisposable>(Subscribe(Connection, subject, handler));
    }

    public async ValueTask<TransportMessage> RequestAsync(string subject, ReadOnlyMemory<byte> payload, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        Subjects.ValidatePublish(subject);
        Milliseconds(timeout, nameof(timeout));
        // Our own inbox rather than the client's request API, whose reply subscription would hold a
        // thread-pool thread (see NatsSubscription).
        var (replyTo, reply) = _requests.Open();
        try
        {
            await PublishAsync(subject, payload, replyTo, cancellationToken);
            return await reply.WaitAsync(timeout, _time, cancellationToken);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"no reply to a request on '{subject}' within {timeout.TotalMilliseconds:F0} ms");
        }
        finally
        {
            _requests.Forget(replyTo);
        }
    }

    public async ValueTask FlushAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        int ms = Milliseconds(timeout, nameof(timeout));
        var connection = Connection;
        try
        {
            // Flush blocks for a server round trip in 0.8.0.
            await OnOwnThread("nats-flush", () =>
            {
                connection.Flush(ms);
                return true;
            }).WaitAsync(cancellationToken);
        }
        catch (NATSTimeoutException)
        {
            throw new TimeoutException($"the NATS server did not confirm a flush within {ms} ms");
        }
        catch (NATSException e)
        {
            throw Describe("flush", e);
        }
        catch (Exception e) when (IsLostConnection(e))
        {
            throw LostWhileWriting("flush", e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
            return;
        if (_requestSubscription is not null)
            await _requestSubscription.DisposeAsync();
        var connection = _connection;
        if (connection is not null)
        {
            // Close joins the client's threads; not on the caller's.
            await OnOwnThread("nats-close", () =>
            {
                try
                {
                    connection.Close();
                }
                catch (Exception e) when (IsLostConnection(e) || e is NATSException)
                {
                    // Close flushes what is buffered: the server is gone (stopped together with us).
                }
                connection.Dispose();
                return true;
            });
            NatsThreadPoolReserve.Return();
        }
        _feed.Complete("closed by its owner");
    }

    private NatsSubscription Subscribe(IConnection connection, string subject, TransportMessageHandler handler)
    {
        try
        {
            return new NatsSubscription(connection.SubscribeSync(subject), subject, handler, _feed);
        }
        catch (NATSException e)
        {
            throw Describe($"subscribe to '{subject}'", e);
        }
    }

    private IConnection Connection
    {
        get
        {
            if (Volatile.Read(ref _disposed) == 1)
                throw new TransportException("the NATS transport is closed");
            return _connection ?? throw new TransportException("the NATS transport is not connected yet");
        }
    }

    private Options BuildClientOptions()
    {
        var o = ConnectionFactory.GetDefaultOptions();
        o.Servers = _options.Urls.ToArray();
        o.NoRandomize = true;
        o.Name = _options.Name;
        o.AllowReconnect = true;
        // 0.8.0 has no "for ever"; int.MaxValue attempts is as good.
        o.MaxReconnect = _options.MaxReconnects < 0 ? int.MaxValue : _options.MaxReconnects;
        o.ReconnectWait = (int)_options.ReconnectWait.TotalMilliseconds;
        o.PingInterval = (int)_options.PingInterval.TotalMilliseconds;
        o.MaxPingsOut = _options.MaxPingsOut;
        o.Timeout = (int)_options.ConnectTimeout.TotalMilliseconds;
        if (_options.User is not null)
        {
            o.User = _options.User;
            o.Password = _options.Password;
        }
        if (_options.Token is not null)
            o.Token = _options.Token;
        _tls?.Configure(o);
        o.DisconnectedEventHandler = (_, e) => _feed.Report(TransportState.Disconnected, Reason("disconnected from the NATS server", e.Conn));
        o.ReconnectedEventHandler = (_, e) => OnReconnected(e.Conn);
        o.ClosedEventHandler = (_, e) =>
        {
            if (Volatile.Read(ref _disposed) == 0)
                _feed.Complete(Reason("the NATS connection closed (reconnecting gave up)", e.Conn));
        };
        o.AsyncErrorEventHandler = (_, e) => _feed.Report(TransportState.Error, $"NATS asynchronous error on '{e.Subscription?.Subject}': {e.Error}");
        return o;
    }

    private IConnection Open(Options natsOptions)
    {
        try
        {
            return new ConnectionFactory().CreateConnection(natsOptions);
        }
        catch (Exception e) when (e is NATSException or IOException or System.Net.Sockets.SocketException or System.Security.Authentication.AuthenticationException)
        {
            throw new TransportException(NatsConnectFailure.Explain(_options, e, _tls?.LastProblem), e);
        }
    }

    private void OnReconnected(IConnection connection)
    {
        try
        {
            Tune(connection);
        }
        catch (NatsSocketTuningException e)
        {
            _tuningProblem = e.Message;
            _feed.Report(TransportState.Error, $"socket tuning after a reconnect failed: {e.Message}");
        }
        _feed.Report(TransportState.Reconnected, $"reconnected to {connection.ConnectedUrl}");
    }

    private void Tune(IConnection connection)
    {
        if (_options.SocketBufferSize == 0)
            return;
        var now = NatsSocketTuning.Apply(connection, _options.SocketBufferSize, _options.NoDelay);
        Interlocked.Increment(ref _tunings);
        if (NatsSocketTuning.Reaches(now, _options.SocketBufferSize))
        {
            _tuningProblem = null;
            return;
        }
        _tuningProblem = $"the kernel kept the NATS socket's buffers at send {now.SendBufferSize} / receive {now.ReceiveBufferSize} bytes, below the {_options.SocketBufferSize} asked: raise net.core.wmem_max and net.core.rmem_max";
        _feed.Report(TransportState.Error, _tuningProblem);
    }

    private static string Reason(string what, IConnection? connection)
    {
        var error = connection?.LastError;
        return error is null ? what : $"{what}: {error.Message}";
    }

    private static TransportException Describe(string operation, NATSException e) => e switch
    {
        NATSConnectionClosedException => new TransportException($"NATS {operation} failed: the connection is closed", e),
        NATSMaxPayloadException => new TransportException($"NATS {operation} failed: the payload is larger than the server's max_payload ({e.Message})", e),
        _ => new TransportException($"NATS {operation} failed: {e.Message}", e),
    };

    // 0.8.0 connects, flushes and closes synchronously, and its connect waits on a task whose
    // completion needs a thread-pool thread: run those blocking calls on a thread of their own, never
    // on a pool thread (a starved pool turned a local connect into a 5 s timeout).
    private static Task<T> OnOwnThread<T>(string name, Func<T> work)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                done.SetResult(work());
            }
            catch (Exception e)
            {
                done.SetException(e);
            }
        })
        { IsBackground = true, Name = name };
        thread.Start();
        return done.Task;
    }

    // 0.8.0 lets the stream's own errors through when the connection drops under a writer (it closes
    // the stream when a ping goes unanswered, or the peer resets it).
    private static bool IsLostConnection(Exception e) => e is IOException or NotSupportedException or ObjectDisposedException;

    private static TransportException LostWhileWriting(string operation, Exception e) =>
        new($"NATS {operation} failed: the connection was lost while writing ({e.Message})", e);

    private static int Milliseconds(TimeSpan timeout, string name)
    {
        if (timeout <= TimeSpan.Zero || timeout.TotalMilliseconds > int.MaxValue)
            throw new ArgumentOutOfRangeException(name, timeout, "must be positive and fit in int milliseconds");
        return Math.Max(1, (int)timeout.TotalMilliseconds);
    }

    // 0.8.0 only takes whole arrays: reuse the caller's when it is one, else copy.
    private static byte[] WholeArray(ReadOnlyMemory<byte> payload) =>
        MemoryMarshal.TryGetArray(payload, out var segment) && segment.Offset == 0 && segment.Count == segment.Array!.Length
            ? segment.Array
            : payload.ToArray();
}
