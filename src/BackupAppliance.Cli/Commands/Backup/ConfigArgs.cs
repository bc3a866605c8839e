using System.CommandLine;

namespace BackupAppliance.Cli.Commands.Backup;

/// <summary>The <c>--config FILE</c> option of the daemon commands and where it defaults to.</summary>
public static class ConfigArgs
{
    public const string AgentDefault = "/etc/backupappliance/agent.json";
    public const string ReceiverDefault = "/etc/backupappliance/receiver.json";

    public static Option<string> Agent() => new("--config")
    {
        Description = $"The agent's configuration file (default $BAPP_AGENT_CONFIG, else {AgentDefault})",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("BAPP_AGENT_CONFIG") ?? AgentDefault,
    };

    public static Option<string> Receiver() => new("--config")
    {
        Description = $"The receiver's configuration file (default $BAPP_RECEIVER_CONFIG, else {ReceiverDefault})",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("BAPP_RECEIVER_CONFIG") ?? ReceiverDefault,
    };
}
