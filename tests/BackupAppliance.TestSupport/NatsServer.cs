using System.ComponentModel;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace BackupAppliance.TestSupport;

/// <summary>
/// A real <c>nats-server</c> on a free loopback port with a generated config (max_payload 8MB, plus
/// whatever <c>extraConfig</c> adds: authorization, tls). It can be stopped, killed with SIGKILL,
/// frozen with SIGSTOP and started again on the same port. Only the process it started is signalled,
/// by its id. A missing nats-server is a failure, never a skip.
/// </summary>
public sealed class NatsServer : IAsyncDisposable
{
    private readonly string _directory;
    private readonly string _configFile;
    private readonly StringBuilder _log = new();
    private Process? _process;

    private NatsServer(int port, string directory, string configFile)
    {
        Port = port;
        _directory = directory;
        _configFile = configFile;
    }

    public int Port { get; }

    public string Url => $"nats://127.0.0.1:{Port}";

    /// <summary>A folder for this server's files (config, certificates), removed on dispose.</summary>
    public string Directory => _directory;

    public string Log
    {
        get
        {
            lock (_log)
                return _log.ToString();
        }
    }

    public static async Task<NatsServer> StartAsync(string extraConfig = "", string? directory = null)
    {
        directory ??= System.IO.Directory.CreateTempSubdirectory("bapp-nats-").FullName;
        int port = FreePort();
        string config = Path.Combine(directory, "nats-server.conf");
        await File.WriteAllTextAsync(config, $"listen: 127.0.0.1:{port}\nmax_payload: 8MB\n{extraConfig}\n");
        var server = new NatsServer(port, directory, config);
        await server.StartAgainAsync();
        return server;
    }

    /// <summary>The absolute path of nats-server from PATH (and /usr/sbin, where Debian puts it).</summary>
    public static string Program()
    {
        var dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Append("/usr/sbin");
        foreach (var d in dirs)
        {
            string candidate = Path.Combine(d, "nats-server");
            if (File.Exists(candidate))
                return candidate;
        }
        throw new InvalidOperationException("nats-server is required by these tests and is not on PATH (Debian package nats-server)");
    }

    /// <summary>Starts the process (again, on the same port) and waits until it accepts connections.</summary>
    public async Task StartAgainAsync()
    {
        if (_process is { HasExited: false })
            throw new InvalidOperationException("nats-server is already running");
        _process?.Dispose();
        var psi = new ProcessStartInfo(Program())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(_configFile);
        Process p;
        try
        {
            p = Process.Start(psi) ?? throw new InvalidOperationException("could not start nats-server");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"nats-server could not be started: {e.Message}", e);
        }
        p.OutputDataReceived += (_, e) => Append(e.Data);
        p.ErrorDataReceived += (_, e) => Append(e.Data);
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _process = p;
        await WaitUntilListeningAsync(p);
    }

    /// <summary>SIGTERM and wait for the exit (a clean shutdown: clients see the socket close).</summary>
    public async Task StopAsync()
    {
        var p = Running();
        await SignalAsync("TERM", p);
        await WaitForExitAsync(p);
    }

    /// <summary>SIGKILL: the process dies at once.</summary>
    public async Task KillAsync()
    {
        var p = Running();
        p.Kill();
        await WaitForExitAsync(p);
    }

    /// <summary>SIGSTOP: the process and its sockets stay, but nothing answers (a hung server or a cut network).</summary>
    public Task FreezeAsync() => SignalAsync("STOP", Running());

    public Task ThawAsync() => SignalAsync("CONT", Running());

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false } p)
        {
            await SignalAsync("CONT", p);
            p.Kill();
            await WaitForExitAsync(p);
        }
        _process?.Dispose();
        try
        {
            System.IO.Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
            // best effort
        }
    }

    private Process Running()
    {
        if (_process is not { HasExited: false } p)
            throw new InvalidOperationException($"nats-server is not running\n{Log}");
        return p;
    }

    private void Append(string? line)
    {
        if (line is null)
            return;
        lock (_log)
            _log.AppendLine(line);
    }

    private static async Task SignalAsync(string signal, Process p)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-" + signal, p.Id.ToString()]) { UseShellExecute = false })
            ?? throw new InvalidOperationException("could not run kill");
        await kill.WaitForExitAsync();
        if (kill.ExitCode != 0 && !p.HasExited)
            throw new InvalidOperationException($"kill -{signal} {p.Id} failed with exit {kill.ExitCode}");
    }

    private async Task WaitForExitAsync(Process p)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await p.WaitForExitAsync(cts.Token);
    }

    private async Task WaitUntilListeningAsync(Process p)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            if (p.HasExited)
                throw new InvalidOperationException($"nats-server exited with {p.ExitCode} at start\n{Log}");
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(20);
            }
        }
    }

    private static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}
