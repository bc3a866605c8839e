using BackupAppliance.Core;
using BackupAppliance.PersistentData;
using BackupAppliance.Thin.Check;

namespace BackupAppliance.Thin.Listing;

/// <summary>
/// thin_ls (thin-provisioning-tools 0.9.0): one row per device of the details tree, in device order,
/// printed byte for byte like the tool. MAPPED_* come from the details' mapped_blocks; a mapping is
/// EXCLUSIVE when no other mapping of any listed device (or of the same device) points at its data
/// block, and SHARED = mapped_blocks − exclusive. Reads raw blocks through the checker's walker and
/// refuses damaged metadata as thin_ls does.
/// </summary>
public static class ThinLister
{
    public const string DamageMessage = "metadata contains errors (run thin_check for details).";

    private readonly record struct Device(ulong Id, DeviceDetails Details);

    public static string List(string path, ThinLsOptions options)
    {
        using var file = new RawMetadataFile(path);
        var sb = ReadSuperblock(file, 0);
        if (options.MetadataSnap)
        {
            if (sb.HeldRoot == 0)
                throw new InvalidOperationException("no current metadata snap");
            sb = ReadSuperblock(file, sb.HeldRoot);
        }

        var problems = new List<CheckProblem>();
        var walker = new RawBTreeWalker(file, file.NrBlocks, problems.Add, shareNodes: false);
        var devices = new List<Device>();
        Walk(walker, problems, sb.DeviceDetailsRoot, TreeRole.DeviceDetails, (_, leaf) =>
        {
            for (int i = 0; i < leaf.NrEntries; i++)
                devices.Add(new Device(leaf.Key(i), DeviceDetails.Read(leaf.Value(i))));
        });
        devices.Sort((a, b) => a.Id.CompareTo(b.Id));

        var fields = options.Columns;
        var exclusive = new Dictionary<ulong, ulong>();
        if (fields.Any(f => f.NeedsSharing()))
            CountExclusives(walker, problems, sb.DataMappingRoot, devices, exclusive);

        var grid = new GridLayout();
        if (options.Headers)
        {
            foreach (var f in fields)
                grid.Field(f.Header());
            grid.NewRow();
        }
        ulong blockSize = sb.DataBlockSize;
        foreach (var dev in devices)
        {
            ulong mapped = dev.Details.MappedBlocks;
            ulong excl = exclusive.GetValueOrDefault(dev.Id);
            // C++ unsigned arithmetic: a details count below the exclusive count wraps, as in thin_ls.
            ulong shared = unchecked(mapped - excl);
            foreach (var f in fields)
            {
                switch (f)
                {
                    case ThinLsField.Dev: grid.Field(dev.Id); break;
                    case ThinLsField.MappedBlocks: grid.Field(mapped); break;
                    case ThinLsField.ExclusiveBlocks: grid.Field(excl); break;
                    case ThinLsField.SharedBlocks: grid.Field(shared); break;
                    case ThinLsField.MappedSectors: grid.Field(unchecked(mapped * blockSize)); break;
                    case ThinLsField.ExclusiveSectors: grid.Field(unchecked(excl * blockSize)); break;
                    case ThinLsField.SharedSectors: grid.Field(unchecked(shared * blockSize)); break;
                    case ThinLsField.MappedBytes: grid.Field(unchecked(mapped * blockSize * DiskUnits.SectorSize)); break;
                    case ThinLsField.ExclusiveBytes: grid.Field(unchecked(excl * blockSize * DiskUnits.SectorSize)); break;
                    case ThinLsField.SharedBytes: grid.Field(unchecked(shared * blockSize * DiskUnits.SectorSize)); break;
                    case ThinLsField.Mapped: grid.Field(DiskUnits.FormatSectors(unchecked(mapped * blockSize))); break;
                    case ThinLsField.Exclusive: grid.Field(DiskUnits.FormatSectors(unchecked(excl * blockSize))); break;
                    case ThinLsField.Shared: grid.Field(DiskUnits.FormatSectors(unchecked(shared * blockSize))); break;
                    case ThinLsField.Transaction: grid.Field(dev.Details.TransactionId); break;
                    case ThinLsField.CreateTime: grid.Field(dev.Details.CreationTime); break;
                    case ThinLsField.SnapTime: grid.Field(dev.Details.SnapshottedTime); break;
                    default: throw new ArgumentOutOfRangeException(nameof(options), f, "unknown field");
                }
            }
            grid.NewRow();
        }
        return grid.Render();
    }

    /// <summary>
    /// Two passes, as thin_ls: first every mapping of every device marks its data block, then each
    /// device counts its mappings whose block was marked exactly once.
    /// </summary>
    private static void CountExclusives(RawBTreeWalker walker, List<CheckProblem> problems, ulong mappingRoot,
        List<Device> devices, Dictionary<ulong, ulong> exclusive)
    {
        var roots = new Dictionary<ulong, ulong>();
        Walk(walker, problems, mappingRoot, TreeRole.MappingTop, (_, leaf) =>
        {
            for (int i = 0; i < leaf.NrEntries; i++)
                roots[leaf.Key(i)] = leaf.Value64(i);
        });
        ulong RootOf(Device d) => roots.TryGetValue(d.Id, out ulong r) ? r : throw new InvalidDataException("couldn't find mapping tree root");

        var sharing = new DataBlockSharing();
        foreach (var dev in devices)
        {
            Walk(walker, problems, RootOf(dev), TreeRole.MappingBottom, (_, leaf) =>
            {
                for (int i = 0; i < leaf.NrEntries; i++)
                    sharing.Inc(BlockTime.Unpack(leaf.Value64(i)).DataBlock);
            });
        }
        foreach (var dev in devices)
        {
            ulong count = 0;
            Walk(walker, problems, RootOf(dev), TreeRole.MappingBottom, (_, leaf) =>
            {
                for (int i = 0; i < leaf.NrEntries; i++)
                    if (sharing.IsExclusive(BlockTime.Unpack(leaf.Value64(i)).DataBlock))
                        count++;
            });
            exclusive[dev.Id] = count;
        }
    }

    private static void Walk(RawBTreeWalker walker, List<CheckProblem> problems, ulong root, TreeRole role, RawBTreeWalker.LeafVisitor onLeaf)
    {
        walker.Walk(root, role, onLeaf);
        if (problems.Count > 0)
            throw new InvalidDataException(DamageMessage);
    }

    private static ThinSuperblock ReadSuperblock(RawMetadataFile file, ulong location)
    {
        byte[] data = file.Read(location)
            ?? throw new CorruptMetadataException(location, "superblock lies beyond the end of the metadata device");
        BlockChecksum.Validate(data, location, BlockKind.ThinSuperblock);
        var sb = new ThinSuperblock(data);
        if (sb.MagicField != ThinSuperblock.Magic)
            throw new CorruptMetadataException(location, $"bad magic in superblock: {sb.MagicField}");
        return sb;
    }
}
