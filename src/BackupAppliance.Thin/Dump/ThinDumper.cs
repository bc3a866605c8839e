using BackupAppliance.Core;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin.Dump;

/// <summary>
/// Walks thin metadata into an <see cref="IMetadataVisitor"/> the way thin_dump 0.9.0 does: devices in
/// id order, details from the details tree, mappings merged into runs of consecutive virtual and data
/// blocks with equal time.
/// </summary>
public static class ThinDumper
{
    public static void Dump(ThinReader reader, IMetadataVisitor visitor, ulong? onlyDevice = null)
    {
        var sb = reader.Superblock;
        visitor.BeginSuperblock(new SuperblockInfo("", sb.Time, sb.TransactionId, sb.Flags, sb.Version,
            sb.DataBlockSize, reader.NrDataBlocks, null));
        foreach (var (dev, root) in reader.Devices())
        {
            if (onlyDevice is { } only && only != dev)
                continue;
            var d = reader.Details(dev) ?? throw new CorruptMetadataException(sb.DeviceDetailsRoot,
                $"metadata contains errors: device {dev} is in the mapping tree but not in the details tree");
            visitor.BeginDevice(new DeviceInfo(dev, d.MappedBlocks, d.TransactionId, d.CreationTime, d.SnapshottedTime));
            var run = new RunBuilder(visitor);
            reader.VisitMappings(root, leaf => run.AddLeaf(leaf));
            run.Flush();
            visitor.EndDevice();
        }
        visitor.EndSuperblock();
    }

    private sealed class RunBuilder
    {
        private readonly IMetadataVisitor _visitor;
        private ulong _vbegin, _dbegin, _len;
        private uint _time;

        public RunBuilder(IMetadataVisitor visitor) => _visitor = visitor;

        public void AddLeaf(BTreeNode leaf)
        {
            int nr = leaf.NrEntries;
            for (int i = 0; i < nr; i++)
            {
                ulong v = leaf.Key(i);
                var bt = BlockTime.Unpack(leaf.Value64(i));
                if (_len > 0 && v == _vbegin + _len && bt.DataBlock == _dbegin + _len && bt.Time == _time)
                {
                    _len++;
                    continue;
                }
                Flush();
                _vbegin = v;
                _dbegin = bt.DataBlock;
                _time = bt.Time;
                _len = 1;
            }
        }

        public void Flush()
        {
            if (_len > 0)
                _visitor.Mapping(_vbegin, _dbegin, _len, _time);
            _len = 0;
        }
    }
}
