using System.CommandLine;
using Spectre.Console;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary>What every pool and volume command shares: the --pool folder and a console for progress.</summary>
public static class PoolArgs
{
    public static Option<string> PoolOption() => new("--pool")
    {
        Description = "The pool's folder",
        Required = true,
    };

    public static Argument<string> NameArgument(string name = "name", string description = "Volume name") => new(name) { Description = description };

    /// <summary>Progress on stderr: live bars on a terminal, nothing when redirected.</summary>
    public static IAnsiConsole ProgressConsole(TextWriter stderr) => AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(stderr),
        Ansi = Console.IsErrorRedirected ? AnsiSupport.No : AnsiSupport.Detect,
        Interactive = Console.IsErrorRedirected ? InteractionSupport.No : InteractionSupport.Detect,
    });
}
