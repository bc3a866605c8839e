using System.Diagnostics;
using System.Text;

namespace BackupAppliance.TestSupport;

/// <summary>
/// A long-running <c>bapp</c> child process (serve, agent run, receiver run): started from the
/// test's own bapp.dll, ready once it prints a line starting with a given prefix on stdout; killed
/// with SIGKILL or stopped with SIGTERM. stderr is kept for failure messages.
/// </summary>
public sealed class BappProcess : IDisposable
{
    private readonly Process _p;
    private readonly StringBuilder _stderr;

    private BappProcess(Process p, StringBuilder stderr, string readyLine)
    {
        _p = p;
        _stderr = stderr;
        ReadyLine = readyLine;
    }

    public int Pid => _p.Id;

    /// <summary>The line that said it was ready.</summary>
    public string ReadyLine { get; }

    public bool HasExited => _p.HasExited;

    /// <summary>What the process wrote to stderr so far.</summary>
    public string Log
    {
        get { lock (_stderr) return _stderr.ToString(); }
    }

    public static BappProcess Start(string readyPrefix, params string[] args)
    {
        string bapp = Path.Combine(AppContext.BaseDirectory, "bapp.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(bapp);
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var err = new StringBuilder();
        p.ErrorDataReceived += (_, e) => { lock (err) err.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        var line = p.StandardOutput.ReadLineAsync();
        if (!line.Wait(TimeSpan.FromSeconds(60)) || line.Result is not { } text || !text.StartsWith(readyPrefix, StringComparison.Ordinal))
        {
            try { p.Kill(true); } catch (InvalidOperationException) { }
            p.WaitForExit();
            lock (err)
                throw new InvalidOperationException($"bapp {string.Join(' ', args)} did not start: {(line.IsCompleted ? line.Result : "(no line)")}; stderr: {err}");
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        _ = p.StandardOutput.ReadToEndAsync();
        return new BappProcess(p, err, text);
    }

    /// <summary>kill -9: no chance to commit or close anything.</summary>
    public void Kill()
    {
        if (_p.HasExited)
            return;
        _p.Kill(entireProcessTree: true);
        _p.WaitForExit();
    }

    /// <summary>SIGTERM: commit and exit; killed if it takes longer than 30 s. Returns the exit code (137 when it had to be killed).</summary>
    public int Stop()
    {
        if (!_p.HasExited)
        {
            Tool.Run("kill", "-TERM", _p.Id.ToString());
            if (!_p.WaitForExit(30_000))
                Kill();
        }
        _p.WaitForExit(); // stderr drained
        return _p.ExitCode;
    }

    public int ExitCode => _p.ExitCode;

    public void Dispose()
    {
        Kill();
        _p.Dispose();
    }
}
