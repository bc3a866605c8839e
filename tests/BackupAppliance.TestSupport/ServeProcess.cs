using System.Diagnostics;

namespace BackupAppliance.TestSupport;

/// <summary>`bapp serve` as a child process on a free loopback port; killed with SIGKILL or stopped with SIGTERM.</summary>
public sealed class ServeProcess : IDisposable
{
    private readonly Process _p;
    private readonly System.Text.StringBuilder _stderr;

    private ServeProcess(Process p, int port, System.Text.StringBuilder stderr)
    {
        _p = p;
        Port = port;
        _stderr = stderr;
    }

    public int Port { get; }
    public int Pid => _p.Id;

    /// <summary>What the server wrote to stderr so far.</summary>
    public string Log
    {
        get { lock (_stderr) return _stderr.ToString(); }
    }

    public static ServeProcess Start(string pool)
    {
        string bapp = Path.Combine(AppContext.BaseDirectory, "bapp.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { bapp, "serve", "--pool", pool, "--listen", "127.0.0.1:0" })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var err = new System.Text.StringBuilder();
        p.ErrorDataReceived += (_, e) => { lock (err) err.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        var line = p.StandardOutput.ReadLineAsync();
        if (!line.Wait(TimeSpan.FromSeconds(30)) || line.Result is not { } text || !text.StartsWith("listening ", StringComparison.Ordinal))
        {
            try { p.Kill(true); } catch (InvalidOperationException) { }
            lock (err)
                throw new InvalidOperationException($"bapp serve did not start: {line.Result}; {err}");
        }
        int port = int.Parse(text[(text.LastIndexOf(':') + 1)..]);
        return new ServeProcess(p, port, err);
    }

    /// <summary>kill -9: no chance to commit or close anything.</summary>
    public void Kill()
    {
        _p.Kill(entireProcessTree: true);
        _p.WaitForExit();
    }

    /// <summary>SIGTERM: commit and exit.</summary>
    public void Stop()
    {
        Tool.Run("kill", "-TERM", _p.Id.ToString());
        if (!_p.WaitForExit(30_000))
            Kill();
    }

    public void Dispose()
    {
        if (!_p.HasExited)
            Kill();
        _p.Dispose();
    }
}
