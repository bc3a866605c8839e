using BackupAppliance.Integration.Tests.Support;

namespace BackupAppliance.Integration.Tests;

/// <summary>
/// Volumes of several sizes (one not a multiple of the block size, one far larger than the data
/// device: thin over-provisioning) and snapshots of two of them.
/// </summary>
public sealed class ListingPool() : PoolServer(new PoolSpec("256M", Volumes), "listing")
{
    public static readonly VolumeSpec[] Volumes =
    [
        new("alpha", 64L << 20),
        new("beta", 1L << 30),
        new("odd-size", (3L << 20) + 512),
        new("huge", 2L << 40),
        VolumeSpec.Snapshot("beta-snap", "beta"),
        VolumeSpec.Snapshot("odd-size-snap", "odd-size"),
    ];

    public static long SizeOf(string name)
    {
        var v = Volumes.Single(v => v.Name == name);
        return v.SnapshotOf is { } of ? SizeOf(of) : v.Size;
    }
}

/// <summary>Acceptance 1: nbdinfo --list shows every volume of the pool with its size; snapshots read-only.</summary>
public sealed class ExportListingTests(ListingPool pool) : IClassFixture<ListingPool>
{
    [Fact]
    public async Task List_shows_every_volume_with_its_size_and_snapshots_read_only()
    {
        var listed = await NbdInfo.ListAsync(pool.ListUri);

        Assert.Equal(ListingPool.Volumes.Select(v => v.Name).Order(), listed.Select(e => e.Name).Order());
        foreach (var spec in ListingPool.Volumes)
        {
            var e = listed.Single(x => x.Name == spec.Name);
            Assert.True(ListingPool.SizeOf(spec.Name) == e.Size, $"{spec.Name}: listed {e.Size} bytes, created with {ListingPool.SizeOf(spec.Name)}");
            bool snapshot = spec.SnapshotOf is not null;
            Assert.True(snapshot == e.ReadOnly, $"{spec.Name}: is_read_only {e.ReadOnly}");
            Assert.Equal(snapshot ? $"snapshot of {spec.SnapshotOf} (read-only)" : "thin volume", e.Description);
        }
        pool.AssertNoUnexpectedErrors();
    }

    [Fact]
    public async Task Snapshot_export_offers_no_write_commands_and_volume_export_does()
    {
        var snap = await NbdInfo.DetailsAsync(pool.Uri("beta-snap"));
        Assert.Equal("1073741824 (1G)", snap["export-size"]);
        Assert.Equal("true", snap["is_read_only"]);
        Assert.Equal("false", snap["can_trim"]);
        Assert.Equal("false", snap["can_zero"]);

        var vol = await NbdInfo.DetailsAsync(pool.Uri("beta"));
        Assert.Equal("false", vol["is_read_only"]);
        Assert.Equal("true", vol["can_trim"]);
        Assert.Equal("true", vol["can_zero"]);
        Assert.Equal("65536", vol["block_size_preferred"]);
    }

    [Fact]
    public async Task Unknown_export_is_refused_by_name()
    {
        var r = await Tool.RunAsync("nbdinfo", pool.Uri("no-such-volume"));
        Assert.NotEqual(0, r.ExitCode);
        Assert.Contains("no-such-volume", r.Output);
    }

    [Fact]
    public async Task Pool_commands_are_refused_while_the_server_holds_the_pool()
    {
        // One process at a time: a second opener would write the same metadata.
        var r = await pool.BappAsync("vol", "create", "intruder", "--size", "1M");
        Assert.True(r.ExitCode != 0 && r.Stderr.Contains("in use"), $"expected an 'in use' refusal:\n{r}");
        var listed = await NbdInfo.ListAsync(pool.ListUri);
        Assert.DoesNotContain(listed, e => e.Name == "intruder");
    }
}
