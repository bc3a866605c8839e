using System.Diagnostics;
using System.Text;

namespace BackupAppliance.Integration.Tests.Support;

/// <summary>
/// <c>bapp serve --pool DIR --listen 127.0.0.1:0</c> as a child process. The port is the one the
/// server reports on stdout ("listening 127.0.0.1:PORT"), so it is always free. Stopped with
/// SIGTERM (<c>kill -TERM PID</c> of this very process); only a server that ignores SIGTERM is killed.
/// </summary>
public sealed class ServeProcess : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(30);

    private readonly Process _p;
    private readonly StringBuilder _stderr;
    private readonly Task _stdoutDrain;

    private ServeProcess(Process p, int port, StringBuilder stderr, Task stdoutDrain)
    {
        _p = p;
        Port = port;
        _stderr = stderr;
        _stdoutDrain = stdoutDrain;
    }

    public int Port { get; }

    public int Pid => _p.Id;

    public bool HasExited => _p.HasExited;

    /// <summary>Everything the server wrote on stderr so far.</summary>
    public string Log
    {
        get { lock (_stderr) return _stderr.ToString(); }
    }

    /// <summary>Errors the NBD server reports as unexpected (a bug or a storage failure outside the volume contract).</summary>
    public IReadOnlyList<string> UnexpectedErrors =>
        Log.Split('\n').Where(l => l.StartsWith("connection error:", StringComparison.Ordinal)).ToList();

    public static async Task<ServeProcess> StartAsync(string pool)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { Bapp.Dll, "serve", "--pool", pool, "--listen", "127.0.0.1:0" })
            psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_NOLOGO"] = "1";
        var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet bapp.dll serve");
        var stderr = new StringBuilder();
        p.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
                lock (stderr)
                    stderr.AppendLine(e.Data);
        };
        p.BeginErrorReadLine();
        p.StandardInput.Close();
        try
        {
            using var cts = new CancellationTokenSource(StartTimeout);
            string? line;
            try
            {
                line = await p.StandardOutput.ReadLineAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                line = null;
            }
            if (line is null || !line.StartsWith("listening 127.0.0.1:", StringComparison.Ordinal))
            {
                Processes.KillTree(p);
                await Processes.WaitForExitAsync(p, TimeSpan.FromSeconds(5));
                lock (stderr)
                    Assert.Fail($"bapp serve --pool {pool} did not report a listening address; stdout line: '{line}'; stderr:\n{stderr}");
            }
            // "listening 127.0.0.1:PORT" (perhaps followed by " and /unix/path")
            string rest = line!["listening 127.0.0.1:".Length..];
            int port = int.Parse(rest.Split(' ')[0]);
            Assert.InRange(port, 1, 65535);
            return new ServeProcess(p, port, stderr, p.StandardOutput.ReadToEndAsync());
        }
        catch
        {
            Processes.KillTree(p);
            p.Dispose();
            throw;
        }
    }

    /// <summary>SIGTERM, then waits for the exit; returns the exit code. A server that does not stop is killed and fails the test.</summary>
    public async Task<int> StopAsync()
    {
        await Processes.TerminateAsync(_p);
        if (!await Processes.WaitForExitAsync(_p, StopTimeout))
        {
            Processes.KillTree(_p);
            Assert.Fail($"bapp serve (pid {_p.Id}) did not exit within {StopTimeout.TotalSeconds} s of SIGTERM; stderr:\n{Log}");
        }
        await _p.WaitForExitAsync(); // flushes the asynchronous stderr reader
        await _stdoutDrain;
        return _p.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_p.HasExited)
            {
                await Processes.TerminateAsync(_p);
                if (!await Processes.WaitForExitAsync(_p, TimeSpan.FromSeconds(10)))
                    Processes.KillTree(_p);
                await Processes.WaitForExitAsync(_p, TimeSpan.FromSeconds(10));
            }
        }
        catch (Exception)
        {
            Processes.KillTree(_p);
        }
        finally
        {
            _p.Dispose();
        }
    }
}
