namespace BackupAppliance.Thin.Dump;

/// <summary>thin_dump's XML, byte for byte (two-space indent, fixed attribute order).</summary>
public sealed class XmlEmitter : IMetadataVisitor
{
    private readonly TextWriter _out;

    public XmlEmitter(TextWriter output) => _out = output;

    public void BeginSuperblock(in SuperblockInfo sb)
    {
        _out.Write($"<superblock uuid=\"{sb.Uuid}\" time=\"{sb.Time}\" transaction=\"{sb.Transaction}\" flags=\"{sb.Flags}\" version=\"{sb.Version}\" data_block_size=\"{sb.DataBlockSize}\" nr_data_blocks=\"{sb.NrDataBlocks}\"");
        if (sb.MetadataSnap is { } snap)
            _out.Write($" metadata_snap=\"{snap}\"");
        _out.Write(">\n");
    }

    public void EndSuperblock() => _out.Write("</superblock>\n");

    public void BeginDevice(in DeviceInfo d) =>
        _out.Write($"  <device dev_id=\"{d.DevId}\" mapped_blocks=\"{d.MappedBlocks}\" transaction=\"{d.Transaction}\" creation_time=\"{d.CreationTime}\" snap_time=\"{d.SnapTime}\">\n");

    public void EndDevice() => _out.Write("  </device>\n");

    public void Mapping(ulong originBegin, ulong dataBegin, ulong length, uint time)
    {
        if (length == 1)
            _out.Write($"    <single_mapping origin_block=\"{originBegin}\" data_block=\"{dataBegin}\" time=\"{time}\"/>\n");
        else
            _out.Write($"    <range_mapping origin_begin=\"{originBegin}\" data_begin=\"{dataBegin}\" length=\"{length}\" time=\"{time}\"/>\n");
    }
}
