namespace BackupAppliance.Thin.Tests.Support;

/// <summary>thin-provisioning-tools 0.9.0 as oracles, with assertions that show their output on failure.</summary>
public static class Oracle
{
    public static void AssertCheckPasses(string file, string context, bool metadataSnap = false)
    {
        var r = metadataSnap ? Tool.Run("thin_check", "-m", file) : Tool.Run("thin_check", file);
        Assert.True(r.ExitCode == 0, $"thin_check{(metadataSnap ? " -m" : "")} failed ({context}):\n{r.Stderr}\n{r.Stdout}");
    }

    public static string Dump(string file, params string[] extra)
    {
        var r = Tool.Run("thin_dump", [.. extra, file]);
        Assert.True(r.ExitCode == 0, $"thin_dump failed: {r.Stderr}");
        return r.Stdout;
    }

    /// <summary>Asserts two texts equal, reporting the first differing line instead of a huge blob.</summary>
    public static void AssertSameText(string expected, string actual, string context)
    {
        if (expected == actual)
            return;
        var e = expected.Split('\n');
        var a = actual.Split('\n');
        for (int i = 0; i < Math.Max(e.Length, a.Length); i++)
        {
            string el = i < e.Length ? e[i] : "<end>";
            string al = i < a.Length ? a[i] : "<end>";
            if (el != al)
                Assert.Fail($"{context}: first difference at line {i + 1}:\n expected: {el}\n   actual: {al}");
        }
    }
}
