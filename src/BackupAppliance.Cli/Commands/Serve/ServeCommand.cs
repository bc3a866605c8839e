using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using BackupAppliance.ChangeTracking;
using BackupAppliance.Nbd;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Cli.Commands.Serve;

/// <summary>
/// <c>bapp serve --pool DIR [--listen 127.0.0.1:10809] [--unix PATH]</c>: every volume as an NBD
/// export until SIGINT/SIGTERM; then the pool commits and closes (its metadata passes thin_check).
/// </summary>
public static class ServeCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var pool = Pool.PoolArgs.PoolOption();
        var listen = new Option<string?>("--listen") { Description = "TCP address:port to listen on (default 127.0.0.1:10809; 'none' for Unix socket only)" };
        var unix = new Option<string?>("--unix") { Description = "Unix socket path to listen on" };
        var suspend = new Option<bool>("--suspend-tracking")
        {
            Description = "Measurements only: writes skip era tracking and every block counts as changed for the next backup",
            Hidden = true,
        };
        var cmd = new Command("serve", "Serve the pool's volumes over NBD (snapshots read-only)") { pool, listen, unix, suspend };
        cmd.SetAction((r, ct) => CommandRunner.RunAsync(stderr, async () =>
        {
            IPEndPoint? endpoint = ParseEndpoint(r.GetValue(listen), r.GetValue(unix) is null);
            await using var tracked = TrackedPool.Open(r.GetValue(pool)!, suspendTracking: r.GetValue(suspend));
            var p = tracked.Pool;
            p.Warning += message => stderr.WriteLine($"warning: {message}");
            if (p.ReclaimNote is { } reclaimed)
                stderr.WriteLine($"warning: {reclaimed}");
            var server = new NbdServer(new BackupAppliance.Agent.TrackedPoolExports(tracked), new NbdServerOptions
            {
                TcpEndPoint = endpoint,
                UnixSocketPath = r.GetValue(unix),
                ConnectionError = e => stderr.WriteLine($"connection error: {e.Message}"),
            });
            // A signal may arrive at any moment, even during shutdown: completing a TCS is always safe.
            var stopRequested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using var onCancel = ct.Register(() => stopRequested.TrySetResult());
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stopRequested.TrySetResult(); });
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stopRequested.TrySetResult(); });
            await server.StartAsync(ct);
            using var controlStop = new CancellationTokenSource();
            var control = PoolControl.ServeAsync(tracked, stderr, controlStop.Token);
            var where = string.Join(" and ", new[] { server.TcpEndPoint?.ToString(), server.UnixSocketPath }.Where(s => s is not null));
            stderr.WriteLine($"serving {p.Volumes.Count} volumes of pool {p.Directory} over NBD on {where}");
            stdout.WriteLine($"listening {where}");
            stdout.Flush();
            await stopRequested.Task;
            stderr.WriteLine("stopping: closing connections and committing the pool");
            await server.StopAsync(CancellationToken.None);
            await server.DisposeAsync();
            controlStop.Cancel();
            await control;
            return 0;
        }));
        return cmd;
    }

    private static IPEndPoint? ParseEndpoint(string? text, bool tcpByDefault)
    {
        if (text is null)
            return tcpByDefault ? new IPEndPoint(IPAddress.Loopback, NbdServerOptions.DefaultPort) : null;
        if (text == "none")
            return null;
        return IPEndPoint.TryParse(text, out var ep)
            ? ep
            : throw new ArgumentException($"--listen expects ADDRESS:PORT such as 127.0.0.1:10809, got '{text}'");
    }
}
