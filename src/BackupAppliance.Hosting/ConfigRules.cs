namespace BackupAppliance.Hosting;

/// <summary>Value rules several configurations share; each throws <see cref="ConfigException"/> naming the option.</summary>
public static class ConfigRules
{
    /// <summary>A duration in seconds: above 0 (or 0 with <paramref name="allowZero"/>) up to a day.</summary>
    public static TimeSpan Seconds(string file, string option, double seconds, bool allowZero = false)
    {
        if (double.IsNaN(seconds) || seconds < 0 || (!allowZero && seconds == 0) || seconds > 86400)
            throw new ConfigException(file, option, $"must be {(allowZero ? "0" : "above 0")} to 86400 seconds (is {seconds})");
        return TimeSpan.FromSeconds(seconds);
    }
}
