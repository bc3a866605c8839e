using System.CommandLine;
using BackupAppliance.Agent;
using BackupAppliance.Cli.Commands.Serve;
using BackupAppliance.Hosting;

namespace BackupAppliance.Cli.Commands.Backup;

/// <summary>
/// <c>bapp agent run --config FILE</c>: the agent daemon in the foreground. It serves the pool's
/// volumes over NBD, answers `bapp backup now` and the pool's own control socket (so `bapp vol …`
/// keeps working), and logs to stderr. Prints one "ready" line on stdout once it listens.
/// </summary>
public static class AgentRunCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var config = ConfigArgs.Agent();
        var run = new Command("run", "Run the agent daemon in the foreground until SIGTERM/SIGINT") { config };
        run.SetAction((r, ct) => CommandRunner.RunAsync(stderr, () =>
        {
            var cfg = AgentConfig.Load(r.GetValue(config)!);
            var log = new DaemonLog(stderr);
            return DaemonHost.RunAsync(stop => AgentDaemon.RunAsync(cfg, log,
                (pool, token) => PoolControl.ServeAsync(pool, stderr, token),
                line => { stdout.WriteLine(line); stdout.Flush(); }, stop), ct);
        }));
        var agent = new Command("agent", "The agent daemon: serves volumes over NBD and backs them up to a receiver over NATS") { run };
        return agent;
    }
}
