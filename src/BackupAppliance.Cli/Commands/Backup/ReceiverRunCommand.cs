using System.CommandLine;
using BackupAppliance.Hosting;
using BackupAppliance.Receiver;

namespace BackupAppliance.Cli.Commands.Backup;

/// <summary><c>bapp receiver run --config FILE</c>: the receiver daemon in the foreground; one "ready" line on stdout.</summary>
public static class ReceiverRunCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = ConfigArgs.Receiver();
        var run = new Command("run", "Run the receiver daemon in the foreground until SIGTERM/SIGINT") { config };
        run.SetAction((r, ct) => CommandRunner.RunAsync(stderr, () =>
        {
            var cfg = ReceiverConfig.Load(r.GetValue(config)!);
            var log = new DaemonLog(stderr);
            return DaemonHost.RunAsync(stop => ReceiverDaemon.RunAsync(cfg, log, line => { stdout.WriteLine(line); stdout.Flush(); }, stop), ct);
        }));
        return new Command("receiver", "The receiver daemon: keeps every backup as a space-sharing point in its own pool") { run };
    }
}
