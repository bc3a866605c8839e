using Spectre.Console;

namespace BackupAppliance.Cli.Commands;

/// <summary>The console long commands report progress on: stderr, live bars on a terminal, plain text when redirected.</summary>
public static class ProgressConsole
{
    public static IAnsiConsole Create(TextWriter stderr) => AnsiConsole.Create(new AnsiConsoleSettings
    {
        Out = new AnsiConsoleOutput(stderr),
        Ansi = Console.IsErrorRedirected ? AnsiSupport.No : AnsiSupport.Detect,
        Interactive = Console.IsErrorRedirected ? InteractionSupport.No : InteractionSupport.Detect,
    });
}
