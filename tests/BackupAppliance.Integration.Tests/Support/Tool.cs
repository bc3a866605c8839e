using System.ComponentModel;
using System.Diagnostics;

namespace BackupAppliance.Integration.Tests.Support;

/// <summary>Exit code and output of a finished program.</summary>
public sealed record ToolResult(string Command, int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed)
{
    public string Output => Stdout + Stderr;

    public override string ToString() => $"$ {Command}\nexit {ExitCode} after {Elapsed.TotalSeconds:F1} s\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>
/// Runs the real tools (libnbd, qemu, util-linux, e2fsprogs, thin-provisioning-tools) as processes.
/// A missing program is a test failure, never a skip; a program that overruns its timeout is killed
/// (by the process we started, never by name) and fails the test.
/// </summary>
public static class Tool
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(90);

    public static async Task<ToolResult> RunAsync(string program, IEnumerable<string> args, TimeSpan? timeout = null)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        psi.Environment["LC_ALL"] = "C"; // tool messages are matched in English
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        string command = program + " " + string.Join(' ', psi.ArgumentList);
        var clock = Stopwatch.StartNew();
        Process p;
        try
        {
            p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {program}");
        }
        catch (Win32Exception e)
        {
            throw new InvalidOperationException($"'{program}' is required by the integration tests and could not be started: {e.Message}", e);
        }
        using (p)
        {
            p.StandardInput.Close();
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
            try
            {
                await p.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                Processes.KillTree(p);
                throw new TimeoutException($"{command} did not finish within {(timeout ?? DefaultTimeout).TotalSeconds} s");
            }
            return new ToolResult(command, p.ExitCode, await stdout, await stderr, clock.Elapsed);
        }
    }

    public static Task<ToolResult> RunAsync(string program, params string[] args) => RunAsync(program, (IEnumerable<string>)args);

    /// <summary>Runs and requires exit code 0, showing everything otherwise.</summary>
    public static async Task<ToolResult> RunOkAsync(string program, params string[] args)
    {
        var r = await RunAsync(program, args);
        Assert.True(r.ExitCode == 0, $"expected success:\n{r}");
        return r;
    }

    /// <summary>Best-effort run for cleanup paths: never throws, short timeout.</summary>
    public static async Task<ToolResult?> TryRunAsync(string program, params string[] args)
    {
        try
        {
            return await RunAsync(program, args, TimeSpan.FromSeconds(20));
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException)
        {
            return null;
        }
    }
}

/// <summary>Signals to processes this test run started, by their id.</summary>
public static class Processes
{
    /// <summary>SIGTERM through <c>kill -TERM PID</c> (Process.Kill would be SIGKILL).</summary>
    public static async Task TerminateAsync(Process p)
    {
        if (p.HasExited)
            return;
        var r = await Tool.RunAsync("kill", "-TERM", p.Id.ToString());
        Assert.True(r.ExitCode == 0 || p.HasExited, $"could not send SIGTERM to {p.Id}:\n{r}");
    }

    public static void KillTree(Process p)
    {
        try
        {
            if (!p.HasExited)
                p.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }
    }

    /// <summary>Waits for an exit; false if still running after the timeout.</summary>
    public static async Task<bool> WaitForExitAsync(Process p, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await p.WaitForExitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
