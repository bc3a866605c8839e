namespace BackupAppliance.Replication.Wire;

/// <summary>
/// The subjects of one agent's volume (PROTOCOL.md, "Subjects"): <c>bapp.&lt;agent&gt;.&lt;volume&gt;.ctl</c>
/// for offers and commits, <c>.data</c> for data frames, <c>.reply</c> for the receiver's answers.
/// </summary>
public static class ReplicationSubjects
{
    public const string Prefix = "bapp";

    /// <summary>What a receiver subscribes to for offers and commits of every agent and volume.</summary>
    public const string AllControl = Prefix + ".*.*.ctl";

    /// <summary>What a receiver subscribes to for data frames of every agent and volume.</summary>
    public const string AllData = Prefix + ".*.*.data";

    public static string Control(string agent, string volume) => $"{Prefix}.{agent}.{volume}.ctl";

    public static string Data(string agent, string volume) => $"{Prefix}.{agent}.{volume}.data";

    public static string Reply(string agent, string volume) => $"{Prefix}.{agent}.{volume}.reply";

    /// <summary>
    /// Splits <c>bapp.&lt;agent&gt;.&lt;volume&gt;.&lt;kind&gt;</c>; false if the subject has another shape or
    /// its names break the naming rule (1 to 64 ASCII letters, digits, '-' or '_').
    /// </summary>
    public static bool TryParse(string subject, out string agent, out string volume, out string kind)
    {
        agent = volume = kind = "";
        var parts = subject.Split('.');
        if (parts.Length != 4 || parts[0] != Prefix)
            return false;
        if (MessageRules.Name(parts[1], "agent") is not null || MessageRules.Name(parts[2], "volume") is not null)
            return false;
        agent = parts[1];
        volume = parts[2];
        kind = parts[3];
        return true;
    }
}
