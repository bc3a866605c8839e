namespace BackupAppliance.Replication.Transport;

/// <summary>
/// NATS subject rules, shared by every transport so they refuse the same input: tokens separated by
/// dots, none empty, no whitespace; a subscription may use <c>*</c> (one whole token) and
/// <c>&gt;</c> (the last token: one or more tokens).
/// </summary>
public static class Subjects
{
    /// <summary>Throws <see cref="ArgumentException"/> naming the problem unless a publish subject is valid (no wildcards).</summary>
    public static void ValidatePublish(string subject, string parameterName = "subject")
    {
        Validate(subject, parameterName, allowWildcards: false);
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the problem unless a subscription subject is valid.</summary>
    public static void ValidateSubscribe(string subject, string parameterName = "subject")
    {
        Validate(subject, parameterName, allowWildcards: true);
    }

    /// <summary>Whether a concrete subject matches a (validated) subscription pattern.</summary>
    public static bool Matches(string pattern, string subject)
    {
        // Positions are token starts; a position past the end means every token was consumed.
        int p = 0;
        int s = 0;
        while (true)
        {
            if (p > pattern.Length)
                return s > subject.Length;
            if (s > subject.Length)
                return false;
            int pEnd = TokenEnd(pattern, p);
            int sEnd = TokenEnd(subject, s);
            var pToken = pattern.AsSpan(p, pEnd - p);
            if (pToken.SequenceEqual(">"))
                return true;
            if (!pToken.SequenceEqual("*") && !pToken.SequenceEqual(subject.AsSpan(s, sEnd - s)))
                return false;
            p = pEnd + 1;
            s = sEnd + 1;
        }
    }

    private static int TokenEnd(string text, int start)
    {
        int dot = text.IndexOf('.', start);
        return dot < 0 ? text.Length : dot;
    }

    private static void Validate(string subject, string parameterName, bool allowWildcards)
    {
        ArgumentNullException.ThrowIfNull(subject, parameterName);
        if (subject.Length == 0)
            throw new ArgumentException("subject is empty", parameterName);
        var tokens = subject.Split('.');
        for (int i = 0; i < tokens.Length; i++)
        {
            string t = tokens[i];
            if (t.Length == 0)
                throw new ArgumentException($"subject '{subject}' has an empty token (token {i + 1})", parameterName);
            foreach (char c in t)
            {
                if (char.IsWhiteSpace(c) || char.IsControl(c))
                    throw new ArgumentException($"subject '{subject}' contains whitespace or a control character", parameterName);
            }
            bool wildcard = t == "*" || t == ">";
            if (!wildcard && (t.Contains('*') || t.Contains('>')))
                throw new ArgumentException($"subject '{subject}': a wildcard must be a whole token (token {i + 1} is '{t}')", parameterName);
            if (wildcard && !allowWildcards)
                throw new ArgumentException($"subject '{subject}': wildcards are not allowed when publishing", parameterName);
            if (t == ">" && i != tokens.Length - 1)
                throw new ArgumentException($"subject '{subject}': '>' must be the last token", parameterName);
        }
    }
}
