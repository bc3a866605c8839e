using Xunit;

namespace BackupAppliance.TestSupport;

/// <summary>Text comparisons for tool output that report the first differing line instead of a huge blob.</summary>
public static class TextAssert
{
    public static void Same(string expected, string actual, string context)
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
