using System.Globalization;

namespace BackupAppliance.Replica;

/// <summary>
/// Backup point ids: the UTC time of the publish as <c>yyyyMMddTHHmmssZ</c>, with <c>-2</c>,
/// <c>-3</c>… when that second (or an earlier one, if the clock went back) is already taken, so ids
/// strictly increase per volume and sort by time.
/// </summary>
public static class PointId
{
    private const string Format = "yyyyMMdd'T'HHmmss'Z'";
    private const int StampLength = 16;

    /// <summary>The id of a point published at <paramref name="now"/> after <paramref name="latest"/> (null: the volume's first).</summary>
    public static string Next(DateTimeOffset now, string? latest)
    {
        string stamp = now.UtcDateTime.ToString(Format, CultureInfo.InvariantCulture);
        if (latest is null)
            return stamp;
        var (lastStamp, lastSuffix) = Parse(latest);
        return string.CompareOrdinal(stamp, lastStamp) > 0 ? stamp : $"{lastStamp}-{lastSuffix + 1}";
    }

    /// <summary>Whether <paramref name="id"/> is a point id this store makes.</summary>
    public static bool IsValid(string id) => TryParse(id, out _, out _);

    /// <summary>Orders ids by time, then by suffix (numerically: <c>-10</c> after <c>-9</c>).</summary>
    public static int Compare(string a, string b)
    {
        var (sa, na) = Parse(a);
        var (sb, nb) = Parse(b);
        int c = string.CompareOrdinal(sa, sb);
        return c != 0 ? c : na.CompareTo(nb);
    }

    private static (string Stamp, int Suffix) Parse(string id) =>
        TryParse(id, out var stamp, out int suffix) ? (stamp, suffix) : throw new ArgumentException($"'{id}' is not a point id (yyyyMMddTHHmmssZ with an optional -N)", nameof(id));

    private static bool TryParse(string id, out string stamp, out int suffix)
    {
        stamp = "";
        suffix = 1;
        if (id.Length < StampLength || !DateTime.TryParseExact(id[..StampLength], Format, CultureInfo.InvariantCulture, DateTimeStyles.None, out _))
            return false;
        stamp = id[..StampLength];
        if (id.Length == StampLength)
            return true;
        return id[StampLength] == '-' && id.Length > StampLength + 1 && id[(StampLength + 1)..].All(char.IsAsciiDigit)
            && int.TryParse(id.AsSpan(StampLength + 1), NumberStyles.None, CultureInfo.InvariantCulture, out suffix) && suffix >= 2;
    }
}
