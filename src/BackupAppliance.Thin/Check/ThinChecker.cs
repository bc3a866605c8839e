using System.Text;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin.Check;

/// <summary>
/// thin_check for dm-thin metadata (thin-provisioning-tools' metadata_checker), reading raw blocks
/// only, so that it can judge files the engine would refuse. Finds what thin_check 0.9.0 finds —
/// superblock, btree node rules (§2.4), metadata reference counts — and what it skips: the superblock
/// magic, data reference counts, mapped_blocks, data blocks past the data device, devices present in
/// only one of the details and mapping trees, cycles.
/// </summary>
public sealed class ThinChecker
{
    /// <summary>DM_SM_METADATA_MAX_BLOCKS: 255 index entries of 16320 blocks.</summary>
    public const ulong MaxMetadataBlocks = 255UL * 16320;

    private readonly RawMetadataFile _file;
    private readonly List<ThinCheckStage> _stages = new();
    private List<CheckProblem> _current = new();
    private ulong? _transactionId;
    private ulong? _metadataFree;

    private ThinChecker(RawMetadataFile file) => _file = file;

    /// <summary>
    /// Checks the metadata file at <paramref name="path"/>. With <paramref name="metadataSnap"/> only the
    /// metadata snapshot's trees are checked (no space maps), as <c>thin_check -m</c>; a given
    /// <paramref name="metadataSnapBlock"/> must match the superblock's held root.
    /// </summary>
    public static ThinCheckReport Check(string path, bool metadataSnap, ulong? metadataSnapBlock = null)
    {
        using var file = new RawMetadataFile(path);
        var checker = new ThinChecker(file);
        try
        {
            if (metadataSnap)
                checker.CheckSnapshot(metadataSnapBlock);
            else
                checker.CheckLive();
        }
        catch (Exception e) when (e is IOException or Core.CorruptMetadataException)
        {
            // A read failing halfway (device error, file shrunk under us) ends the check, not the program.
            checker.Report(new CheckProblem(null, $"check stopped: {e.Message}", Fatal: true));
        }
        return new ThinCheckReport(checker._stages, checker._transactionId, checker._metadataFree);
    }

    private void CheckLive()
    {
        Begin("examining superblock");
        var sb = ReadSuperblock(0, snapshotCopy: false);
        if (sb is null)
            return;
        _transactionId = sb.TransactionId;
        ulong limit = MetadataLimit(sb);
        ThinSuperblock? snap = null;
        if (sb.HeldRoot != 0)
        {
            if (sb.HeldRoot >= limit)
                Report(CheckProblem.At(0, $"held root (metadata snapshot) {sb.HeldRoot} lies beyond the end of the metadata device ({limit} blocks)"));
            else
                snap = ReadSuperblock(sb.HeldRoot, snapshotCopy: true);
        }

        var counter = new BlockCounter(limit);
        counter.Inc(0);
        var walker = new RawBTreeWalker(_file, limit, Report, shareNodes: true, counter);
        var enumerator = new RawBTreeWalker(_file, limit, _ => { }, shareNodes: false);
        var dataCounts = new DataBlockCounter();
        var dataSm = sb.DataSpaceMapRoot;
        var trees = new ThinTreesCheck(walker, enumerator, dataCounts, dataSm.NrBlocks, Report);

        Begin("examining devices tree");
        var details = trees.CheckDetails(sb.DeviceDetailsRoot);
        Begin("examining mapping tree");
        trees.CheckMappings(sb.DataMappingRoot, details, "");
        if (snap is not null)
        {
            // §5.5: the copy holds one reference to itself and one to each of its two tree roots.
            Begin("examining metadata snapshot");
            counter.Inc(sb.HeldRoot);
            var snapDetails = trees.CheckDetails(snap.DeviceDetailsRoot);
            trees.CheckMappings(snap.DataMappingRoot, snapDetails, " (metadata snapshot)");
        }

        Begin("checking space map counts");
        var reader = new SpaceMapReader(_file, limit, walker, counter, Report);
        var metadataLayout = reader.ReadMetadata(sb.MetadataSpaceMapRoot);
        var dataLayout = reader.ReadData(dataSm);
        var comparer = new RefCountComparer(_file, Report);
        bool complete = !walker.CutShort && !reader.CutShort;
        _metadataFree = comparer.Compare(metadataLayout, counter, complete);

        Begin("checking data space map counts");
        comparer.Compare(dataLayout, dataCounts, complete);
    }

    private void CheckSnapshot(ulong? expectedBlock)
    {
        Begin("examining superblock");
        var sb = ReadSuperblock(0, snapshotCopy: false);
        if (sb is null)
            return;
        if (sb.HeldRoot == 0)
        {
            Report(new CheckProblem(0, "No metadata snapshot found.", Fatal: true));
            return;
        }
        if (expectedBlock is ulong want && want != sb.HeldRoot)
        {
            Report(CheckProblem.At(0, $"metadata snapshot does not match that in superblock (asked for {want}, held root is {sb.HeldRoot})"));
            return;
        }
        ulong limit = MetadataLimit(sb);
        if (sb.HeldRoot >= limit)
        {
            Report(CheckProblem.At(0, $"held root (metadata snapshot) {sb.HeldRoot} lies beyond the end of the metadata device ({limit} blocks)"));
            return;
        }
        var snap = ReadSuperblock(sb.HeldRoot, snapshotCopy: true);
        if (snap is null)
            return;
        _transactionId = snap.TransactionId;

        var walker = new RawBTreeWalker(_file, limit, Report, shareNodes: true);
        var enumerator = new RawBTreeWalker(_file, limit, _ => { }, shareNodes: false);
        // The copy has no space maps of its own; the live data device size still bounds its mappings.
        var trees = new ThinTreesCheck(walker, enumerator, dataCounts: null, sb.DataSpaceMapRoot.NrBlocks, Report);
        Begin("examining devices tree");
        var details = trees.CheckDetails(snap.DeviceDetailsRoot);
        Begin("examining mapping tree");
        trees.CheckMappings(snap.DataMappingRoot, details, "");
    }

    /// <summary>
    /// Reads and judges a superblock (block 0, or a metadata-snapshot copy at the held root). Returns
    /// null when its checksum or location is wrong, since nothing in it can then be trusted.
    /// </summary>
    private ThinSuperblock? ReadSuperblock(ulong location, bool snapshotCopy)
    {
        string what = snapshotCopy ? "metadata snapshot superblock" : "superblock";
        byte[]? data = _file.Read(location);
        if (data is null)
        {
            Report(location == 0
                ? new CheckProblem(null, "Metadata device/file too small.  Is this binary metadata?", Fatal: true)
                : CheckProblem.At(location, $"{what} lies beyond the end of the metadata device"));
            return null;
        }
        if (BlockChecksum.Problem(data, location, BlockKind.ThinSuperblock) is string problem)
        {
            Report(CheckProblem.At(location, $"{what} is corrupt: {problem}"));
            if (LooksLikeXml(data))
                Report(new CheckProblem(null, "This looks like XML.  thin_check only checks the binary metadata format.", Fatal: true));
            return null;
        }
        var sb = new ThinSuperblock(data);
        if (sb.MagicField != ThinSuperblock.Magic)
            Report(CheckProblem.At(location, $"bad magic in {what}: {sb.MagicField}, expected {ThinSuperblock.Magic}"));
        if (sb.MetadataBlockSize != ThinSuperblock.MetadataBlockSizeSectors)
            Report(CheckProblem.At(location, $"metadata block size in {what} is {sb.MetadataBlockSize} sectors, expected {ThinSuperblock.MetadataBlockSizeSectors}"));
        if (sb.IncompatFlags != 0)
            Report(CheckProblem.At(location, $"{what} has incompatible feature flags 0x{sb.IncompatFlags:x} that no kernel supports"));
        if (snapshotCopy && sb.HeldRoot != 0)
            Report(CheckProblem.At(location, $"{what} has a held root of its own ({sb.HeldRoot}); the kernel refuses to take a snapshot of a snapshot", fatal: false));
        return sb;
    }

    /// <summary>
    /// Blocks usable for metadata: the metadata space map's size, when the file holds it. References
    /// at or past the limit are reported where they are found.
    /// </summary>
    private ulong MetadataLimit(ThinSuperblock sb)
    {
        ulong nr = sb.MetadataSpaceMapRoot.NrBlocks;
        if (nr == 0)
        {
            Report(CheckProblem.At(0, "metadata space map has 0 blocks"));
            return _file.NrBlocks;
        }
        if (nr > MaxMetadataBlocks)
            Report(CheckProblem.At(0, $"metadata space map has {nr} blocks, more than the {MaxMetadataBlocks} an index block can describe"));
        if (nr > _file.NrBlocks)
        {
            Report(CheckProblem.At(0, $"metadata space map covers {nr} blocks, but the metadata device holds only {_file.NrBlocks}"));
            return _file.NrBlocks;
        }
        return nr;
    }

    private static bool LooksLikeXml(ReadOnlySpan<byte> data)
    {
        string head = Encoding.ASCII.GetString(data[..64]).TrimStart();
        return head.StartsWith("<?xml", StringComparison.Ordinal) || head.StartsWith("<superblock", StringComparison.Ordinal);
    }

    private void Begin(string title)
    {
        _current = new List<CheckProblem>();
        _stages.Add(new ThinCheckStage(title, _current));
    }

    private void Report(CheckProblem problem) => _current.Add(problem);
}
