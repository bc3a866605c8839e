using BackupAppliance.Replication.Transport;
using BackupAppliance.Transport.Nats;

namespace BackupAppliance.Hosting;

/// <summary>A daemon's NATS connection: waits for the server at start (it may come up later) and logs every connection change.</summary>
public static class NatsConnect
{
    public static async Task<NatsTransport> ConnectAsync(NatsTransportOptions options, DaemonLog log, CancellationToken cancellationToken)
    {
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                var transport = await NatsTransport.ConnectAsync(options, cancellationToken: cancellationToken).ConfigureAwait(false);
                log.Info($"connected to NATS ({string.Join(", ", options.Urls)})");
                transport.StateChanges.Subscribe(new StateLogger(log));
                return transport;
            }
            catch (TransportException e) when (!cancellationToken.IsCancellationRequested)
            {
                if (attempt == 1 || attempt % 30 == 0)
                    log.Warn($"cannot reach NATS yet ({e.Message}); retrying every 2 s");
                await Task.Delay(TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private sealed class StateLogger(DaemonLog log) : IObserver<TransportStateChange>
    {
        public void OnNext(TransportStateChange value) => log.Info($"NATS {value.State}: {value.Reason}");
        public void OnError(Exception error) => log.Warn($"NATS: {error.Message}");
        public void OnCompleted() { }
    }
}
