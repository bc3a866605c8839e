namespace BackupAppliance.Thin.Dump;

/// <summary>thin_dump -f human_readable, byte for byte.</summary>
public sealed class HumanReadableEmitter : IMetadataVisitor
{
    private readonly TextWriter _out;

    public HumanReadableEmitter(TextWriter output) => _out = output;

    public void BeginSuperblock(in SuperblockInfo sb) =>
        _out.Write($"begin superblock: \"{sb.Uuid}\", {sb.Time}, {sb.Transaction}, {sb.Flags}, {sb.Version}, {sb.DataBlockSize}, {sb.NrDataBlocks}\n");

    public void EndSuperblock() => _out.Write("end superblock\n");

    public void BeginDevice(in DeviceInfo d) =>
        _out.Write($"device: {d.DevId}\nmapped_blocks: {d.MappedBlocks}\ntransaction: {d.Transaction}\ncreation time: {d.CreationTime}\nsnap time: {d.SnapTime}\n");

    public void EndDevice() => _out.Write("\n");

    public void Mapping(ulong originBegin, ulong dataBegin, ulong length, uint time)
    {
        if (length == 1)
            _out.Write($"    {originBegin} -> {dataBegin}, {time}\n");
        else
            _out.Write($"    ({originBegin}..{originBegin + length - 1}) -> ({dataBegin}..{dataBegin + length - 1}), {time}\n");
    }
}
