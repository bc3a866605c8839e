using System.Text;
using BackupAppliance.PersistentData;
using BackupAppliance.Thin.Dump;

namespace BackupAppliance.Thin.Restore;

/// <summary>
/// Builds metadata from the intermediate representation (thin_restore): each device gets its own
/// mapping tree, data blocks are reference counted per mapping, mapped_blocks is recounted.
/// On failure the superblock is zeroed so a half-written file is never taken for valid metadata.
/// </summary>
public sealed class ThinRestorer : IMetadataVisitor, IDisposable
{
    private readonly string _path;
    private ThinMetadata? _md;
    private DeviceInfo _device;
    private bool _inDevice;
    private ulong _lastVBlock;
    private bool _anyMapping;

    private ThinRestorer(string path) => _path = path;

    /// <summary>Warnings worth telling the operator (e.g. an ignored metadata_snap).</summary>
    public List<string> Warnings { get; } = new();

    public static ThinRestorer RestoreFile(string xmlPath, string outputPath)
    {
        if (!File.Exists(outputPath))
            throw new FileNotFoundException($"Output file does not exist: {outputPath} (create it first, e.g. truncate -s 16M {outputPath})");
        if (new FileInfo(outputPath).Length < 32 * 1024)
            throw new ArgumentException($"Output file too small: {outputPath} (at least 32 KiB)");
        var r = new ThinRestorer(outputPath);
        try
        {
            using var input = new StreamReader(xmlPath);
            ThinXmlReader.Read(input, r);
            if (r._md is null)
                throw new FormatException("the XML holds no <superblock>");
            return r;
        }
        catch
        {
            r._md?.Dispose();
            r._md = null;
            ZeroSuperblock(outputPath);
            throw;
        }
    }

    public void BeginSuperblock(in SuperblockInfo sb)
    {
        if (_md is not null)
            throw new FormatException("more than one <superblock>");
        if (sb.MetadataSnap is { } snap && snap != 0)
            Warnings.Add($"metadata_snap=\"{snap}\" ignored: a restore cannot recreate a metadata snapshot");
        _md = ThinMetadata.Create(_path, sb.DataBlockSize, sb.NrDataBlocks, sb.Version);
        _md.SetSuperblockFields(sb.Time, sb.Transaction, sb.Flags, Encoding.UTF8.GetBytes(sb.Uuid));
    }

    public void EndSuperblock()
    {
        _md!.Commit();
    }

    public void BeginDevice(in DeviceInfo dev)
    {
        _md!.CreateThin(dev.DevId);
        _device = dev;
        _inDevice = true;
        _anyMapping = false;
    }

    public void EndDevice()
    {
        var md = _md!;
        var now = md.GetDetails(_device.DevId);
        md.SetDetails(_device.DevId, new DeviceDetails(now.MappedBlocks, _device.Transaction, _device.CreationTime, _device.SnapTime));
        _inDevice = false;
    }

    public void Mapping(ulong originBegin, ulong dataBegin, ulong length, uint time)
    {
        var md = _md!;
        if (!_inDevice)
            throw new FormatException("mapping outside a device");
        if (dataBegin + length > md.NrDataBlocks)
            throw new FormatException($"mapping beyond end of data device ({dataBegin + length - 1} >= {md.NrDataBlocks})");
        for (ulong i = 0; i < length; i++)
        {
            ulong v = originBegin + i, d = dataBegin + i;
            // A repeated virtual block: the later mapping wins; the same data block must not count twice.
            if (_anyMapping && v <= _lastVBlock && md.Lookup(_device.DevId, v) is { } old && old.DataBlock == d)
            {
                md.Insert(_device.DevId, v, d, time);
                continue;
            }
            md.IncDataBlock(d);
            md.Insert(_device.DevId, v, d, time);
            _lastVBlock = _anyMapping ? Math.Max(_lastVBlock, v) : v;
            _anyMapping = true;
        }
    }

    private static void ZeroSuperblock(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.Write(new byte[BlockChecksum.BlockSize]);
        f.Flush(flushToDisk: true);
    }

    public void Dispose() => _md?.Dispose();
}
