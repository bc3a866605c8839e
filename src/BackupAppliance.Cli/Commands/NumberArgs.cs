using System.CommandLine;
using System.Globalization;

namespace BackupAppliance.Cli.Commands;

/// <summary>Numeric options whose parse errors name the option and what it expects.</summary>
public static class NumberArgs
{
    public static Option<ulong?> UnsignedOption(string name, string what, params string[] aliases) =>
        UnsignedOptionShownAs(name, name, what, aliases);

    /// <param name="shownAs">How the user wrote the option, for the error message.</param>
    public static Option<ulong?> UnsignedOptionShownAs(string name, string shownAs, string what, params string[] aliases) =>
        new(name, aliases)
        {
            Description = what,
            CustomParser = r =>
            {
                string text = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
                if (ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong v))
                    return v;
                r.AddError($"{shownAs} expects {what.ToLowerInvariant()} (a whole number ≥ 0), got '{text}'");
                return null;
            },
        };
}
