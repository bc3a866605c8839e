using System.Text;

namespace BackupAppliance.Thin.Tests.Support;

/// <summary>
/// An in-memory model of thin metadata, kept beside the engine in randomized tests. It renders the
/// XML thin_dump must print, computed independently of the engine's dumper.
/// </summary>
public sealed class ThinModel
{
    public sealed class Device
    {
        public SortedDictionary<ulong, (ulong Data, uint Time)> Map { get; init; } = new();
        public ulong Transaction { get; set; }
        public uint CreationTime { get; set; }
        public uint SnapTime { get; set; }
    }

    public SortedDictionary<ulong, Device> Devices { get; } = new();
    public uint Time { get; set; }
    public ulong Transaction { get; set; }

    public void CreateThin(ulong id) =>
        Devices[id] = new Device { Transaction = Transaction, CreationTime = Time, SnapTime = Time };

    public void Snapshot(ulong id, ulong origin)
    {
        Time++;
        var o = Devices[origin];
        o.SnapTime = Time;
        Devices[id] = new Device
        {
            Map = new SortedDictionary<ulong, (ulong, uint)>(o.Map),
            Transaction = Transaction, CreationTime = Time, SnapTime = Time,
        };
    }

    public ThinModel Clone()
    {
        var m = new ThinModel { Time = Time, Transaction = Transaction };
        foreach (var (id, d) in Devices)
            m.Devices[id] = new Device
            {
                Map = new SortedDictionary<ulong, (ulong, uint)>(d.Map),
                Transaction = d.Transaction, CreationTime = d.CreationTime, SnapTime = d.SnapTime,
            };
        return m;
    }

    public int DistinctDataBlocks() => Devices.Values.SelectMany(d => d.Map.Values.Select(v => v.Data)).Distinct().Count();

    /// <summary>What thin_dump prints for this state.</summary>
    public string ExpectedDump(uint version, ulong nrDataBlocks)
    {
        var sb = new StringBuilder();
        sb.Append($"<superblock uuid=\"\" time=\"{Time}\" transaction=\"{Transaction}\" flags=\"0\" version=\"{version}\" data_block_size=\"128\" nr_data_blocks=\"{nrDataBlocks}\">\n");
        foreach (var (id, d) in Devices)
        {
            sb.Append($"  <device dev_id=\"{id}\" mapped_blocks=\"{d.Map.Count}\" transaction=\"{d.Transaction}\" creation_time=\"{d.CreationTime}\" snap_time=\"{d.SnapTime}\">\n");
            var list = d.Map.ToList();
            int i = 0;
            while (i < list.Count)
            {
                int j = i + 1;
                while (j < list.Count && list[j].Key == list[i].Key + (ulong)(j - i)
                       && list[j].Value.Data == list[i].Value.Data + (ulong)(j - i) && list[j].Value.Time == list[i].Value.Time)
                    j++;
                var (k, v) = list[i];
                if (j - i == 1)
                    sb.Append($"    <single_mapping origin_block=\"{k}\" data_block=\"{v.Data}\" time=\"{v.Time}\"/>\n");
                else
                    sb.Append($"    <range_mapping origin_begin=\"{k}\" data_begin=\"{v.Data}\" length=\"{j - i}\" time=\"{v.Time}\"/>\n");
                i = j;
            }
            sb.Append("  </device>\n");
        }
        sb.Append("</superblock>\n");
        return sb.ToString();
    }
}
