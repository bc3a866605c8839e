using System.CommandLine;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary>What every pool and volume command shares: the --pool folder and volume names.</summary>
public static class PoolArgs
{
    public static Option<string> PoolOption() => new("--pool")
    {
        Description = "The pool's folder",
        Required = true,
    };

    public static Argument<string> NameArgument(string name = "name", string description = "Volume name") => new(name) { Description = description };
}
