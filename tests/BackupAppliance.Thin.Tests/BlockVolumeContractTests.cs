using System.Security.Cryptography;
using BackupAppliance.Core;
using BackupAppliance.Thin.Pool;
using BackupAppliance.Thin.Tests.Support;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// One contract for every <see cref="IBlockVolume"/>: the in-memory reference and a thin volume must
/// behave the same (bytes, discard granularity, zeroes, allocation map, read-only, range checks).
/// </summary>
public abstract class BlockVolumeContract : IAsyncLifetime
{
    protected const int Bs = 65536;
    protected const long Size = 64L << 20;
    protected IBlockVolume Volume = null!;
    protected IBlockVolume ReadOnlyVolume = null!;

    public abstract Task InitializeAsync();
    public abstract Task DisposeAsync();

    private static byte[] Random(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    private async Task<byte[]> Read(long offset, int length)
    {
        var b = new byte[length];
        await Volume.ReadAsync(offset, b, default);
        return b;
    }

    [Fact]
    public async Task WritesReadBackAtAnyAlignment()
    {
        var model = new byte[4 * Bs];
        var rng = new System.Random(11);
        for (int i = 0; i < 200; i++)
        {
            int off = rng.Next(model.Length - 1), len = rng.Next(1, Math.Min(model.Length - off, 3 * Bs));
            var data = Random(len, i);
            await Volume.WriteAsync(Bs + off, data, fua: i % 17 == 0, default);
            data.CopyTo(model, off);
        }
        Assert.Equal(SHA256.HashData(model), SHA256.HashData(await Read(Bs, model.Length)));
        Assert.Equal(new byte[Bs], await Read(0, Bs)); // never written: zeroes
    }

    [Fact]
    public async Task DiscardUnmapsWholeBlocksOnly()
    {
        var data = Random(4 * Bs, 2);
        await Volume.WriteAsync(0, data, false, default);
        await Volume.DiscardAsync(Bs / 2, 2 * Bs, false, default); // covers block 1 fully, blocks 0 and 2 partly
        var back = await Read(0, 4 * Bs);
        Assert.Equal(data.AsSpan(0, Bs).ToArray(), back.AsSpan(0, Bs).ToArray());
        Assert.Equal(new byte[Bs], back.AsSpan(Bs, Bs).ToArray());
        Assert.Equal(data.AsSpan(2 * Bs, 2 * Bs).ToArray(), back.AsSpan(2 * Bs, 2 * Bs).ToArray());
        var map = await Volume.GetAllocationAsync(0, 4 * Bs, default);
        Assert.Equal([new VolumeExtent(0, Bs, false), new VolumeExtent(Bs, Bs, true), new VolumeExtent(2 * Bs, 2 * Bs, false)], map);
    }

    [Fact]
    public async Task WriteZeroesZeroesTheRangeExactly()
    {
        var data = Random(3 * Bs, 3);
        await Volume.WriteAsync(0, data, false, default);
        await Volume.WriteZeroesAsync(100, 2 * Bs, noHole: false, fua: false, default);
        var back = await Read(0, 3 * Bs);
        Array.Clear(data, 100, 2 * Bs);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(back));
    }

    [Fact]
    public async Task AllocationCoversTheRangeAndMatchesContent()
    {
        await Volume.WriteAsync(5 * Bs + 7, Random(10, 4), false, default);
        await Volume.WriteAsync(9 * Bs, Random(2 * Bs, 5), false, default);
        var map = await Volume.GetAllocationAsync(Bs, 20 * Bs, default);
        Assert.Equal(Bs, map[0].Offset);
        Assert.Equal(20L * Bs, map.Sum(e => e.Length));
        for (int i = 1; i < map.Count; i++)
            Assert.Equal(map[i - 1].Offset + map[i - 1].Length, map[i].Offset);
        foreach (var e in map.Where(e => e.IsHole))
            Assert.Equal(new byte[e.Length], await Read(e.Offset, (int)e.Length));
        Assert.Equal([5L * Bs, 9L * Bs], map.Where(e => !e.IsHole).Select(e => e.Offset));
    }

    [Fact]
    public async Task OutOfRangeIsInvalidArgumentAndReadOnlyRefusesWrites()
    {
        var e = await Assert.ThrowsAsync<VolumeException>(() => Volume.ReadAsync(Size - 10, new byte[20], default).AsTask());
        Assert.Equal(VolumeError.InvalidArgument, e.Error);
        e = await Assert.ThrowsAsync<VolumeException>(() => Volume.WriteAsync(-1, new byte[1], false, default).AsTask());
        Assert.Equal(VolumeError.InvalidArgument, e.Error);
        e = await Assert.ThrowsAsync<VolumeException>(() => ReadOnlyVolume.WriteAsync(0, new byte[1], false, default).AsTask());
        Assert.Equal(VolumeError.ReadOnly, e.Error);
        e = await Assert.ThrowsAsync<VolumeException>(() => ReadOnlyVolume.DiscardAsync(0, Bs, false, default).AsTask());
        Assert.Equal(VolumeError.ReadOnly, e.Error);
    }
}

public class MemoryVolumeContractTests : BlockVolumeContract
{
    public override Task InitializeAsync()
    {
        Volume = new MemoryBlockVolume("mem", Size, Bs);
        ReadOnlyVolume = new MemoryBlockVolume("ro", Size, Bs, readOnly: true);
        return Task.CompletedTask;
    }

    public override Task DisposeAsync() => Task.CompletedTask;
}

public class ThinVolumeContractTests : BlockVolumeContract
{
    private readonly TempDir _dir = Tool.TempDir();
    private ThinPool _pool = null!;

    public override Task InitializeAsync()
    {
        _pool = ThinPool.Create(_dir.File("pool"), 256L << 20, new PoolSettings());
        Volume = _pool.CreateVolume("v", Size);
        _pool.Snapshot("v", "snap");
        ReadOnlyVolume = _pool.OpenVolume("snap");
        return Task.CompletedTask;
    }

    public override async Task DisposeAsync()
    {
        await _pool.DisposeAsync();
        Oracle.AssertCheckPasses(_dir.File("pool/metadata"), "pool after the contract test");
        _dir.Dispose();
    }
}
