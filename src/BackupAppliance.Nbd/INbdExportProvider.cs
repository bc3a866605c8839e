using BackupAppliance.Core;

namespace BackupAppliance.Nbd;

/// <summary>
/// What the server may export: the protocol layer's only view of storage. The first listed export
/// is the default one (a client asking for the empty name gets it).
/// </summary>
public interface INbdExportProvider
{
    /// <summary>The exports a client may see with NBD_OPT_LIST, default first.</summary>
    IReadOnlyList<NbdExportInfo> List();

    /// <summary>The volume behind an export, or <c>null</c> if there is none by that name.</summary>
    IBlockVolume? Open(string name);
}

/// <summary>One export as listed to clients.</summary>
public sealed record NbdExportInfo(string Name, string Description, long Size, bool IsReadOnly);
