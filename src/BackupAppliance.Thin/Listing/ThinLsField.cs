namespace BackupAppliance.Thin.Listing;

/// <summary>The columns thin_ls can print, in the order its --help lists them.</summary>
public enum ThinLsField
{
    Dev,
    MappedBlocks,
    ExclusiveBlocks,
    SharedBlocks,
    MappedSectors,
    ExclusiveSectors,
    SharedSectors,
    MappedBytes,
    ExclusiveBytes,
    SharedBytes,
    Mapped,
    Exclusive,
    Shared,
    Transaction,
    CreateTime,
    SnapTime,
}

public static class ThinLsFields
{
    private static readonly string[] Names =
    {
        "DEV", "MAPPED_BLOCKS", "EXCLUSIVE_BLOCKS", "SHARED_BLOCKS",
        "MAPPED_SECTORS", "EXCLUSIVE_SECTORS", "SHARED_SECTORS",
        "MAPPED_BYTES", "EXCLUSIVE_BYTES", "SHARED_BYTES",
        "MAPPED", "EXCLUSIVE", "SHARED",
        "TRANSACTION", "CREATE_TIME", "SNAP_TIME",
    };

    /// <summary>What thin_ls prints without -o.</summary>
    public static IReadOnlyList<ThinLsField> Default { get; } =
        Array.AsReadOnly(new[] { ThinLsField.Dev, ThinLsField.Mapped, ThinLsField.CreateTime, ThinLsField.SnapTime });

    public static IReadOnlyList<ThinLsField> All { get; } = Array.AsReadOnly(Enum.GetValues<ThinLsField>());

    public static string Header(this ThinLsField field) => Names[(int)field];

    /// <summary>True for the columns that need the exclusive/shared count (two passes over the mappings).</summary>
    public static bool NeedsSharing(this ThinLsField field) => field is
        ThinLsField.ExclusiveBlocks or ThinLsField.SharedBlocks or
        ThinLsField.ExclusiveSectors or ThinLsField.SharedSectors or
        ThinLsField.ExclusiveBytes or ThinLsField.SharedBytes or
        ThinLsField.Exclusive or ThinLsField.Shared;

    /// <summary>
    /// Parses a comma-separated list as thin_ls does (getline on ','): a trailing comma adds nothing,
    /// an empty item elsewhere is an unknown field, and an empty list means no columns.
    /// </summary>
    public static IReadOnlyList<ThinLsField> Parse(string list)
    {
        var items = list.Split(',').ToList();
        if (items[^1].Length == 0)
            items.RemoveAt(items.Count - 1);
        var fields = new List<ThinLsField>(items.Count);
        foreach (string item in items)
        {
            int i = Array.IndexOf(Names, item);
            if (i < 0)
                throw new FormatException("unknown field");
            fields.Add((ThinLsField)i);
        }
        return fields;
    }
}
