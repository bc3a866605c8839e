using System.Diagnostics;
using BackupAppliance.Cli;

namespace BackupAppliance.TestSupport;

/// <summary>Runs real programs (thin-provisioning-tools as oracles) and our CLI in-process.</summary>
public static class Tool
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>Runs an external program; a missing program is a test failure, not a skip.</summary>
    public static Result Run(string program, params string[] args)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {program}");
        var err = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return new Result(p.ExitCode, stdout, err.Result);
    }

    /// <summary>Runs <c>bapp</c> in-process with captured output.</summary>
    public static Result Bapp(params string[] args)
    {
        var o = new StringWriter { NewLine = "\n" };
        var e = new StringWriter { NewLine = "\n" };
        int rc = BappApp.Run(args, o, e);
        return new Result(rc, o.ToString(), e.ToString());
    }

    /// <summary>A new scratch directory removed with the returned handle.</summary>
    public static TempDir TempDir() => new();

    /// <summary>The shared oracle samples: shared/tools/oracles beside the repository.</summary>
    public static string OracleSamples
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null)
            {
                var candidate = Path.Combine(dir.FullName, "shared", "tools", "oracles");
                if (Directory.Exists(candidate) && File.Exists(Path.Combine(candidate, "two_devs.xml")))
                    return candidate;
                dir = dir.Parent;
            }
            throw new DirectoryNotFoundException("oracle samples not found: expected shared/tools/oracles beside the repository");
        }
    }
}
