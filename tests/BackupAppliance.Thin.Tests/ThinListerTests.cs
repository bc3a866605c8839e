using System.CommandLine;
using BackupAppliance.Cli.Commands;
using BackupAppliance.Thin.Listing;
using BackupAppliance.Thin.Tests.Support;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// The lister's output is byte-identical to the real thin_ls 0.9.0 for every column, with and without
/// headers, on live metadata and on metadata snapshots, including devices that share a whole mapping
/// tree and data blocks mapped by three devices.
/// </summary>
public class ThinListerTests : IClassFixture<PoolSamples>
{
    private const string AllFields =
        "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,MAPPED_SECTORS,EXCLUSIVE_SECTORS,SHARED_SECTORS,"
        + "MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES,MAPPED,EXCLUSIVE,SHARED,TRANSACTION,CREATE_TIME,SNAP_TIME";

    private readonly PoolSamples _samples;

    public ThinListerTests(PoolSamples samples) => _samples = samples;

    public static TheoryData<string> AllSamples() => new(PoolSamples.All);

    public static TheoryData<string> EachField() => new(ThinLsFields.All.Select(f => f.Header()));

    private static string ThinLs(string file, params string[] options)
    {
        var r = Tool.Run("thin_ls", options.Append(file).ToArray());
        Assert.True(r.ExitCode == 0, $"thin_ls {string.Join(' ', options)}: {r.Stderr}");
        return r.Stdout;
    }

    private static string Ours(string file, bool snap = false, bool headers = true, string? fields = null) =>
        ThinLister.List(file, new ThinLsOptions(snap, headers, fields is null ? null : ThinLsFields.Parse(fields)));

    [Theory]
    [MemberData(nameof(AllSamples))]
    public void DefaultColumnsMatchThinLs(string sample)
    {
        string file = _samples.PathOf(sample);
        string theirs = ThinLs(file);
        Assert.StartsWith("DEV ", theirs);
        Assert.Equal(theirs, Ours(file));
        Assert.Equal(ThinLs(file, "--no-headers"), Ours(file, headers: false));
    }

    [Theory]
    [MemberData(nameof(AllSamples))]
    public void AllColumnsMatchThinLs(string sample)
    {
        string file = _samples.PathOf(sample);
        Assert.Equal(ThinLs(file, "-o", AllFields), Ours(file, fields: AllFields));
        Assert.Equal(ThinLs(file, "--no-headers", "--format", AllFields), Ours(file, headers: false, fields: AllFields));
    }

    [Theory]
    [MemberData(nameof(EachField))]
    public void EachColumnAloneMatchesThinLs(string field)
    {
        foreach (string sample in new[] { PoolSamples.Many, PoolSamples.Shared, PoolSamples.TwoDevs })
        {
            string file = _samples.PathOf(sample);
            Assert.Equal(ThinLs(file, "-o", field), Ours(file, fields: field));
        }
    }

    [Fact]
    public void SharingIsCountedPerMappingAcrossDevices()
    {
        // many: devices 0 and 1 share 1500 blocks, 17 maps 100 of those again; shared: device 30 is a
        // create_snap of device 0, so all of device 0 and 30 is shared.
        string many = Ours(_samples.PathOf(PoolSamples.Many), fields: "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS");
        Assert.Equal(
            "DEV MAPPED_BLOCKS EXCLUSIVE_BLOCKS SHARED_BLOCKS \n" +
            "  0          3000             1500          1500 \n" +
            "  1          2500             1000          1500 \n" +
            "  4             0                0             0 \n" +
            "  9             1                1             0 \n" +
            " 17           700              600           100 \n", many);
        string shared = Ours(_samples.PathOf(PoolSamples.Shared), fields: "DEV,EXCLUSIVE_BLOCKS,SHARED,CREATE_TIME,SNAP_TIME");
        Assert.Contains("  0                0  188MiB           0         3 \n", shared);
        Assert.Contains(" 30                0  188MiB           3         3 \n", shared);
        Assert.Contains(" 17              600 6400KiB           2         2 \n", shared);
    }

    [Fact]
    public void ColumnsCanRepeatAndComeInAnyOrder()
    {
        string file = _samples.PathOf(PoolSamples.Many);
        const string fields = "SHARED,DEV,SHARED,SNAP_TIME,MAPPED_BLOCKS,";
        Assert.Equal(ThinLs(file, "-o", fields), Ours(file, fields: fields));
        Assert.Equal("", ThinLs(file, "-o", ""));
        Assert.Equal("", Ours(file, fields: ""));
    }

    [Theory]
    [InlineData(PoolSamples.Snap)]
    [InlineData(PoolSamples.SnapCow)]
    [InlineData(PoolSamples.SnapCowDetails)]
    public void MetadataSnapshotMatchesThinLs(string sample)
    {
        string file = _samples.PathOf(sample);
        Assert.Equal(ThinLs(file, "-m"), Ours(file, snap: true));
        Assert.Equal(ThinLs(file, "-m", "-o", AllFields), Ours(file, snap: true, fields: AllFields));
        Assert.Equal(ThinLs(file, "-m", "--no-headers", "-o", AllFields), Ours(file, snap: true, headers: false, fields: AllFields));
    }

    [Fact]
    public void MetadataSnapshotShowsTheSnapshotNotTheLiveDetails()
    {
        // snap_cow_details: the live details of device 1 were changed after the snapshot was taken.
        string file = _samples.PathOf(PoolSamples.SnapCowDetails);
        string live = Ours(file, fields: "DEV,TRANSACTION,SNAP_TIME");
        string snap = Ours(file, snap: true, fields: "DEV,TRANSACTION,SNAP_TIME");
        Assert.Equal("DEV TRANSACTION SNAP_TIME \n  0           0         1 \n  1          99         7 \n", live);
        Assert.Equal("DEV TRANSACTION SNAP_TIME \n  0           0         1 \n  1           1         1 \n", snap);
        Assert.Equal(ThinLs(file, "-o", "DEV,TRANSACTION,SNAP_TIME"), live);
        Assert.Equal(ThinLs(file, "-m", "-o", "DEV,TRANSACTION,SNAP_TIME"), snap);
    }

    [Fact]
    public void ErrorsMatchThinLs()
    {
        string file = _samples.PathOf(PoolSamples.TwoDevs);
        var noSnap = Tool.Run("thin_ls", "-m", file);
        Assert.Equal((1, "no current metadata snap\n"), (noSnap.ExitCode, noSnap.Stderr));
        Assert.Equal("no current metadata snap", Assert.Throws<InvalidOperationException>(() => Ours(file, snap: true)).Message);

        var unknown = Tool.Run("thin_ls", "-o", "DEV,NOPE", file);
        Assert.Equal((1, "unknown field\n"), (unknown.ExitCode, unknown.Stderr));
        Assert.Equal("unknown field", Assert.Throws<FormatException>(() => ThinLsFields.Parse("DEV,NOPE")).Message);
        Assert.Throws<FormatException>(() => ThinLsFields.Parse(",DEV"));
        Assert.Throws<FormatException>(() => ThinLsFields.Parse("DEV,,MAPPED"));
    }

    [Fact]
    public void DamagedMappingsAreRefusedWhenTheyAreNeeded()
    {
        string file = _samples.Copy(PoolSamples.Many);
        ulong leaf = RawPoolEdit.Leaves(file, RawPoolEdit.DeviceRoot(file, 17))[1];
        RawPoolEdit.FlipByte(file, leaf, 64);

        // The default columns never read the mapping trees, in thin_ls or here.
        Assert.Equal(ThinLs(file), Ours(file));
        var theirs = Tool.Run("thin_ls", "-o", "DEV,EXCLUSIVE", file);
        Assert.Equal(1, theirs.ExitCode);
        Assert.Contains(ThinLister.DamageMessage, theirs.Stderr);
        var e = Assert.Throws<InvalidDataException>(() => Ours(file, fields: "DEV,EXCLUSIVE"));
        Assert.Equal(ThinLister.DamageMessage, e.Message);
    }

    [Theory]
    [InlineData(0UL, "0")]
    [InlineData(128UL, "64KiB")]             // one 64 KiB block
    [InlineData(101UL * 128, "6464KiB")]     // up to 8 MiB stays in KiB
    [InlineData(1000UL * 128, "63MiB")]      // 62.5 rounds away from zero
    [InlineData(3000UL * 128, "188MiB")]     // 187.5 likewise
    [InlineData(2097152UL, "1024MiB")]       // exactly 1 GiB is not > 1 MiB after one division
    [InlineData(20000UL * 2097152, "20TiB")]
    public void HumanUnitsFollowThinLs(ulong sectors, string expected) =>
        Assert.Equal(expected, DiskUnits.FormatSectors(sectors));

    [Fact]
    public void GridRightJustifiesAndEndsCellsWithASpace()
    {
        var g = new GridLayout();
        g.Field("DEV");
        g.Field("MAPPED");
        g.NewRow();
        g.Field(7);
        g.Field("64KiB");
        g.NewRow();
        Assert.Equal("DEV MAPPED \n  7  64KiB \n", g.Render());
        Assert.Equal("", new GridLayout().Render());
    }

    // ---- the CLI command

    private static Tool.Result RunLs(params string[] args)
    {
        var o = new StringWriter { NewLine = "\n" };
        var e = new StringWriter { NewLine = "\n" };
        var root = new RootCommand { ThinLsCommand.Create(o, e) };
        int rc = root.Parse(MetadataSnapArgs.Normalize(args)).Invoke(new InvocationConfiguration { Output = o, Error = e });
        return new Tool.Result(rc, o.ToString(), e.ToString());
    }

    [Fact]
    public void CommandOutputIsByteIdentical()
    {
        string file = _samples.PathOf(PoolSamples.SnapCowDetails);
        Assert.Equal((0, ThinLs(file)), (RunLs("ls", file).ExitCode, RunLs("ls", file).Stdout));
        Assert.Equal(ThinLs(file, "--no-headers", "-o", AllFields), RunLs("ls", "--no-headers", "-o", AllFields, file).Stdout);
        Assert.Equal(ThinLs(file, "-m", "--format", AllFields), RunLs("ls", "-m", "--format", AllFields, file).Stdout);
        // thin_ls takes -m<block> and ignores the block.
        Assert.Equal(ThinLs(file, "-m9"), RunLs("ls", "-m9", file).Stdout);

        var r = RunLs("ls", "-m", _samples.PathOf(PoolSamples.TwoDevs));
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Contains("no current metadata snap", r.Stderr);
        r = RunLs("ls", "-o", "DEV,BOGUS", file);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("unknown field", r.Stderr);
    }
}
