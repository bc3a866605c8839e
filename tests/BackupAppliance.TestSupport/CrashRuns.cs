namespace BackupAppliance.TestSupport;

/// <summary>Run numbers for randomized crash tests: a few by default, many with <c>BAPP_LONG_TESTS=1</c>.</summary>
public static class CrashRuns
{
    public static bool Long => Environment.GetEnvironmentVariable("BAPP_LONG_TESTS") == "1";

    /// <summary>Theory data 0..n-1, n being <paramref name="normal"/> or, in long runs, <paramref name="longRuns"/>.</summary>
    public static Xunit.TheoryData<int> Numbers(int normal, int longRuns)
    {
        var data = new Xunit.TheoryData<int>();
        for (int i = 0; i < (Long ? longRuns : normal); i++)
            data.Add(i);
        return data;
    }
}
