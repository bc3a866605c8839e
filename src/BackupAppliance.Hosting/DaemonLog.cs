namespace BackupAppliance.Hosting;

/// <summary>A daemon's log: one line per event, UTC time first, to a writer (stderr, so journald keeps it).</summary>
public sealed class DaemonLog(TextWriter writer, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly Lock _sync = new();

    public void Info(string message) => Write("info", message);

    public void Warn(string message) => Write("warn", message);

    public void Error(string message) => Write("error", message);

    private void Write(string level, string message)
    {
        string line = $"{_time.GetUtcNow():yyyy-MM-ddTHH:mm:ss.fffZ} {level} {message}";
        lock (_sync)
        {
            writer.WriteLine(line);
            writer.Flush();
        }
    }
}
