namespace BackupAppliance.Thin.Listing;

/// <summary>Options of a listing: thin_ls's -m, --no-headers and -o.</summary>
public sealed record ThinLsOptions(bool MetadataSnap = false, bool Headers = true, IReadOnlyList<ThinLsField>? Fields = null)
{
    public IReadOnlyList<ThinLsField> Columns => Fields ?? ThinLsFields.Default;
}
