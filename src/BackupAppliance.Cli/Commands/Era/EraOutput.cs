namespace BackupAppliance.Cli.Commands.Era;

/// <summary>The tools' <c>-o FILE</c>: write there instead of stdout ("-" is stdout too).</summary>
public static class EraOutput
{
    public static void Write(string? path, TextWriter stdout, Action<TextWriter> body)
    {
        if (path is null or "-")
        {
            body(stdout);
            stdout.Flush();
            return;
        }
        using var file = new StreamWriter(path, append: false, new System.Text.UTF8Encoding(false), 1 << 16) { NewLine = "\n" };
        body(file);
    }
}
