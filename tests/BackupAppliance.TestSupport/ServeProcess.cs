namespace BackupAppliance.TestSupport;

/// <summary>`bapp serve` as a child process on a free loopback port; killed with SIGKILL or stopped with SIGTERM.</summary>
public sealed class ServeProcess : IDisposable
{
    private readonly BappProcess _p;

    private ServeProcess(BappProcess p, int port)
    {
        _p = p;
        Port = port;
    }

    public int Port { get; }
    public int Pid => _p.Pid;

    /// <summary>What the server wrote to stderr so far.</summary>
    public string Log => _p.Log;

    public static ServeProcess Start(string pool)
    {
        var p = BappProcess.Start("listening ", "serve", "--pool", pool, "--listen", "127.0.0.1:0");
        int port = int.Parse(p.ReadyLine[(p.ReadyLine.LastIndexOf(':') + 1)..]);
        return new ServeProcess(p, port);
    }

    /// <summary>kill -9: no chance to commit or close anything.</summary>
    public void Kill() => _p.Kill();

    /// <summary>SIGTERM: commit and exit.</summary>
    public void Stop() => _p.Stop();

    public void Dispose() => _p.Dispose();
}
