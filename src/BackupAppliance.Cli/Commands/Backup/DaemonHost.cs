using System.Runtime.InteropServices;

namespace BackupAppliance.Cli.Commands.Backup;

/// <summary>Runs a daemon in the foreground until SIGTERM or SIGINT (systemd's stop, Ctrl-C).</summary>
public static class DaemonHost
{
    public static async Task<int> RunAsync(Func<CancellationToken, Task> daemon, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
        await daemon(stop.Token);
        return 0;
    }
}
