using BackupAppliance.Core;

namespace BackupAppliance.Nbd;

/// <summary>What the handshake agreed, fixed for the whole transmission phase of one connection.</summary>
internal sealed record NbdSession(
    IBlockVolume Volume,
    string ExportName,
    ushort TransmissionFlags,
    bool StructuredReplies,
    bool AllocationContext)
{
    public long Size => Volume.Size;

    public bool IsReadOnly => (TransmissionFlags & NbdConstants.TxReadOnly) != 0;
}
