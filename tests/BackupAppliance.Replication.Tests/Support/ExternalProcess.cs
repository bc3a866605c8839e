using System.Diagnostics;

namespace BackupAppliance.Replication.Tests.Support;

/// <summary>
/// Runs a real program (Debian's python3 with python3-msgpack, the zstd CLI) with bytes on stdin
/// and returns its stdout as bytes. A missing program is a test failure, not a skip.
/// </summary>
public static class ExternalProcess
{
    public sealed record Result(int ExitCode, byte[] Stdout, string Stderr)
    {
        public string Text => System.Text.Encoding.UTF8.GetString(Stdout);

        public override string ToString() => $"exit {ExitCode}\n--- stderr\n{Stderr}";
    }

    public static async Task<Result> RunAsync(string program, IEnumerable<string> args, ReadOnlyMemory<byte> stdin)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        // A missing program throws here, naming it: these tests require it.
        using (var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {program}"))
        {
            var stdout = new MemoryStream();
            var copyOut = p.StandardOutput.BaseStream.CopyToAsync(stdout);
            var stderr = p.StandardError.ReadToEndAsync();
            await p.StandardInput.BaseStream.WriteAsync(stdin);
            p.StandardInput.Close();
            using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
            try
            {
                await p.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                p.Kill(entireProcessTree: true);
                throw new TimeoutException($"{program} did not finish in time");
            }
            await copyOut;
            return new Result(p.ExitCode, stdout.ToArray(), await stderr);
        }
    }

    /// <summary>Runs and asserts exit code 0, showing stderr otherwise.</summary>
    public static async Task<Result> RunOkAsync(string program, IEnumerable<string> args, ReadOnlyMemory<byte> stdin = default)
    {
        var r = await RunAsync(program, args, stdin);
        Assert.True(r.ExitCode == 0, $"{program} {string.Join(' ', args)} failed: {r}");
        return r;
    }

    /// <summary>Debian's python3, which has python3-msgpack (the python3 first on PATH may not).</summary>
    public const string Python = "/usr/bin/python3";

    /// <summary>Runs a python script (text) with <paramref name="stdin"/>; returns its stdout as text.</summary>
    public static async Task<string> PythonAsync(string script, ReadOnlyMemory<byte> stdin = default) =>
        (await RunOkAsync(Python, ["-c", script], stdin)).Text;
}
