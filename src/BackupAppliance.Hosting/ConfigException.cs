namespace BackupAppliance.Hosting;

/// <summary>A configuration file that cannot be used; the message names the file and the option.</summary>
public sealed class ConfigException : Exception
{
    public ConfigException(string file, string option, string problem, Exception? inner = null)
        : base($"config {file}: option '{option}': {problem}", inner)
    {
        File = file;
        Option = option;
    }

    public ConfigException(string file, string problem, Exception? inner = null)
        : base($"config {file}: {problem}", inner)
    {
        File = file;
        Option = null;
    }

    public string File { get; }

    /// <summary>The option's path with dots (<c>nats.url</c>), or null when the file as a whole is wrong.</summary>
    public string? Option { get; }
}
