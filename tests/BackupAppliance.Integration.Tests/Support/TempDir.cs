namespace BackupAppliance.Integration.Tests.Support;

/// <summary>
/// A scratch folder under /tmp, removed on dispose. Never deletes through a mount point: anything
/// still mounted below it is lazily unmounted first, and left alone if that fails.
/// </summary>
public sealed class TempDir : IAsyncDisposable
{
    public TempDir(string purpose)
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"bapp-it-{purpose}-{Guid.NewGuid().ToString("N")[..10]}");
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Sub(string name)
    {
        string p = System.IO.Path.Combine(Path, name);
        Directory.CreateDirectory(p);
        return p;
    }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public async ValueTask DisposeAsync()
    {
        foreach (var mount in Mounts.Below(Path).OrderByDescending(m => m.Length))
            await Tool.TryRunAsync("umount", "-l", mount);
        if (Mounts.Below(Path).Count > 0)
            return; // deleting would walk into a live mount
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>What /proc/self/mountinfo says is mounted.</summary>
public static class Mounts
{
    public static IReadOnlyList<string> Below(string dir)
    {
        string prefix = System.IO.Path.TrimEndingDirectorySeparator(dir) + "/";
        return All().Where(m => m == dir || m.StartsWith(prefix, StringComparison.Ordinal)).ToList();
    }

    public static bool IsMounted(string dir) => All().Contains(System.IO.Path.TrimEndingDirectorySeparator(dir));

    private static IEnumerable<string> All() =>
        File.ReadAllLines("/proc/self/mountinfo")
            .Select(l => l.Split(' '))
            .Where(f => f.Length > 4)
            .Select(f => Unescape(f[4]));

    // mountinfo escapes space, tab, newline and backslash as octal.
    private static string Unescape(string s) =>
        s.Replace("\\040", " ").Replace("\\011", "\t").Replace("\\012", "\n").Replace("\\134", "\\");
}
