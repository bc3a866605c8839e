using System.Runtime.InteropServices;

namespace BackupAppliance.Cli.Commands.Backup;

/// <summary>Runs a daemon in the foreground until SIGTERM or SIGINT (systemd's stop, Ctrl-C).</summary>
public static class DaemonHost
{
    public static async Task<int> RunAsync(Func<CancellationToken, Task> daemon, CancellationToken cancellationToken)
    {
        // A signal handler may still run after the daemon has stopped and its token source is
        // gone (one dispatch can be under way while the registration is disposed): it only
        // completes a task, which never throws, and this method does the cancelling.
        var signalled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; signalled.TrySetResult(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; signalled.TrySetResult(); });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var running = daemon(stop.Token);
        if (await Task.WhenAny(running, signalled.Task) != running)
            await stop.CancelAsync();
        await running;
        return 0;
    }
}
