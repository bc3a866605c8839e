using System.Text;

namespace BackupAppliance.Thin.Listing;

/// <summary>
/// thin_ls's table layout: every column right-justified to its widest cell, each cell followed by one
/// space (so lines end in a space), rows ended by a newline. A grid with no cells prints nothing.
/// </summary>
public sealed class GridLayout
{
    private readonly List<List<string>> _rows = new() { new List<string>() };

    public void Field(string text) => _rows[^1].Add(text);

    public void Field(ulong value) => Field(value.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public void NewRow() => _rows.Add(new List<string>());

    public string Render()
    {
        int columns = _rows.Max(r => r.Count);
        var widths = new int[columns];
        foreach (var row in _rows)
            for (int i = 0; i < row.Count; i++)
                widths[i] = Math.Max(widths[i], row[i].Length);

        var sb = new StringBuilder();
        // A newline goes out before the next row, and only after a row that printed something.
        bool newlineNeeded = false;
        foreach (var row in _rows)
        {
            if (newlineNeeded)
            {
                sb.Append('\n');
                newlineNeeded = false;
            }
            for (int i = 0; i < row.Count; i++)
            {
                sb.Append(' ', widths[i] - row[i].Length).Append(row[i]).Append(' ');
                newlineNeeded = true;
            }
        }
        return sb.ToString();
    }
}
