using System.Diagnostics;
using BackupAppliance.Cli;

namespace BackupAppliance.Era.Tests.Support;

/// <summary>Runs real programs (the era tools of thin-provisioning-tools 0.9.0 as oracles) and finds the shared samples.</summary>
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

    /// <summary>The shared oracle samples: shared/tools/oracles beside the repository.</summary>
    public static string OracleSamples
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null)
            {
                var candidate = Path.Combine(dir.FullName, "shared", "tools", "oracles");
                if (Directory.Exists(candidate) && File.Exists(Path.Combine(candidate, "era.xml")))
                    return candidate;
                dir = dir.Parent;
            }
            throw new DirectoryNotFoundException("oracle samples not found: expected shared/tools/oracles beside the repository");
        }
    }
}

/// <summary>A scratch directory, removed on dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "bapp-era-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }
    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>Creates a zero-filled (sparse) file of the given size.</summary>
    public string Sparse(string name, long bytes)
    {
        var p = File(name);
        using var f = new FileStream(p, FileMode.Create);
        f.SetLength(bytes);
        return p;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
