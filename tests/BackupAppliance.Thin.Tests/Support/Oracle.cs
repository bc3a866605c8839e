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
}
