using System.Text;

namespace BackupAppliance.Thin.Tests.Support;

/// <summary>
/// Metadata files made by the real thin_restore (plus the shared mksnap.py/cowtest.py and
/// <see cref="RawPoolEdit"/> for what it cannot express), built once per test class. Tests mutate
/// copies from <see cref="Copy"/>, never the originals.
/// </summary>
public sealed class PoolSamples : IDisposable
{
    /// <summary>Small samples from shared/tools/oracles (16 MiB files, one leaf per tree).</summary>
    public const string TwoDevs = "two_devs", BigDev = "big_dev", NoVersion = "nover";

    /// <summary>Five devices, ~7000 mappings, internal nodes, data counts of 3 (overflow tree), two metadata and three data bitmaps.</summary>
    public const string Many = "many";

    /// <summary><see cref="Many"/> after create_snap 30 of device 0: a whole multi-level mapping tree shared.</summary>
    public const string Shared = "shared";

    /// <summary>No devices at all.</summary>
    public const string Empty = "empty";

    /// <summary>two_devs with a metadata snapshot (mksnap.py).</summary>
    public const string Snap = "snap";

    /// <summary><see cref="Snap"/> then a kernel-style COW of the live mapping tree (cowtest.py).</summary>
    public const string SnapCow = "snap_cow";

    /// <summary><see cref="SnapCow"/> then a COW of the live details leaf: live and snapshot details differ.</summary>
    public const string SnapCowDetails = "snap_cow_details";

    public static readonly string[] All = { TwoDevs, BigDev, NoVersion, Many, Shared, Empty, Snap, SnapCow, SnapCowDetails };

    private readonly TempDir _dir = Tool.TempDir();
    private int _copies;

    public PoolSamples()
    {
        string oracles = Path.Combine(_dir.Path, "oracles");
        Directory.CreateDirectory(oracles);
        foreach (var f in Directory.GetFiles(Tool.OracleSamples))
            File.Copy(f, Path.Combine(oracles, Path.GetFileName(f)));

        Restore(TwoDevs, Path.Combine(oracles, "two_devs.xml"), 16L << 20);
        Restore(BigDev, Path.Combine(oracles, "big_dev.xml"), 16L << 20);
        Restore(NoVersion, Path.Combine(oracles, "nover.xml"), 16L << 20);
        File.WriteAllText(_dir.File("many.xml"), ManyXml());
        Restore(Many, _dir.File("many.xml"), 80L << 20);
        File.WriteAllText(_dir.File("empty.xml"),
            "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"128\" nr_data_blocks=\"100\">\n</superblock>\n");
        Restore(Empty, _dir.File("empty.xml"), 1L << 20);

        File.Copy(PathOf(Many), PathOf(Shared));
        RawPoolEdit.CreateSnapshot(PathOf(Shared), origin: 0, id: 30);

        File.Copy(PathOf(TwoDevs), PathOf(Snap));
        Python(Path.Combine(oracles, "mksnap.py"), PathOf(Snap));
        File.Copy(PathOf(Snap), PathOf(SnapCow));
        Python(Path.Combine(oracles, "cowtest.py"), PathOf(SnapCow));
        File.Copy(PathOf(SnapCow), PathOf(SnapCowDetails));
        RawPoolEdit.CowDetails(PathOf(SnapCowDetails), 1, d => d with { TransactionId = 99, SnapshottedTime = 7 });
    }

    public string PathOf(string name) => _dir.File(name + ".bin");

    /// <summary>A private copy of a sample to damage.</summary>
    public string Copy(string name)
    {
        string copy = _dir.File($"{name}-{Interlocked.Increment(ref _copies)}.bin");
        File.Copy(PathOf(name), copy);
        return copy;
    }

    /// <summary>
    /// Devices 0 and 1 share 1500 data blocks, device 17 maps 100 of those again (data count 3, so the
    /// data space map's overflow tree is used) and blocks in all three data bitmaps; device 4 is empty.
    /// </summary>
    public static string ManyXml()
    {
        var x = new StringBuilder();
        x.Append("<superblock uuid=\"\" time=\"2\" transaction=\"42\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"40000\">\n");
        void Device(ulong id, ulong trans, uint created, uint snapped, IEnumerable<(ulong V, ulong D, int T)> maps)
        {
            x.Append($"  <device dev_id=\"{id}\" mapped_blocks=\"0\" transaction=\"{trans}\" creation_time=\"{created}\" snap_time=\"{snapped}\">\n");
            foreach (var (v, d, t) in maps)
                x.Append($"    <single_mapping origin_block=\"{v}\" data_block=\"{d}\" time=\"{t}\"/>\n");
            x.Append("  </device>\n");
        }
        Device(0, 0, 0, 1, Enumerable.Range(0, 3000).Select(i => ((ulong)i, (ulong)i, i % 7 == 0 ? 1 : 0)));
        Device(1, 1, 1, 1, Enumerable.Range(0, 2500).Select(i => ((ulong)i * 2, i < 1500 ? (ulong)i : 5000UL + (ulong)i, 1)));
        Device(4, 3, 2, 2, Enumerable.Empty<(ulong, ulong, int)>());
        Device(9, 4, 2, 2, new[] { (123456UL, 39999UL, 2) });
        Device(17, 5, 2, 2, Enumerable.Range(0, 700).Select(i =>
            ((ulong)i * 3 + 10, i < 100 ? (ulong)i : i < 400 ? 20000UL + (ulong)i : 35000UL + (ulong)i, i % 3)));
        x.Append("</superblock>\n");
        return x.ToString();
    }

    private void Restore(string name, string xml, long bytes)
    {
        string file = _dir.Sparse(name + ".bin", bytes);
        var r = Tool.Run("thin_restore", "-i", xml, "-o", file);
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"thin_restore {name}: {r.Stderr}");
    }

    private static void Python(string script, string file)
    {
        var r = Tool.Run("python3", script, file);
        if (r.ExitCode != 0)
            throw new InvalidOperationException($"{Path.GetFileName(script)}: {r.Stderr}");
    }

    public void Dispose() => _dir.Dispose();
}
