using BackupAppliance.Core;

namespace BackupAppliance.ChangeTracking.Tests;

/// <summary>
/// A seeded random mix of writes (random bytes, any alignment), whole-block discards and
/// write-zeroes on a volume, mirrored in a byte model of the volume.
/// </summary>
public sealed class Workload
{
    private readonly IBlockVolume _volume;
    private readonly Random _rng;

    public Workload(IBlockVolume volume, int seed)
    {
        _volume = volume;
        _rng = new Random(seed);
        Model = new byte[volume.Size];
    }

    public byte[] Model { get; }

    /// <summary>
    /// Runs <paramref name="ops"/> operations. With <paramref name="contentChangingOnly"/> every
    /// operation changes what it touches (no partial zeroing that might zero zeroes), so the blocks
    /// touched are exactly the blocks whose content differs.
    /// </summary>
    public async Task RunAsync(int ops, bool contentChangingOnly, CancellationToken ct = default)
    {
        long bs = _volume.BlockSize, size = _volume.Size;
        long blocks = (size + bs - 1) / bs;
        for (int i = 0; i < ops; i++)
        {
            int kind = _rng.Next(100);
            if (kind < 65)
            {
                long off = _rng.NextInt64(size);
                int len = (int)Math.Min(size - off, 1 + _rng.Next((int)bs * 3));
                var data = new byte[len];
                _rng.NextBytes(data);
                await _volume.WriteAsync(off, data, fua: _rng.Next(10) == 0, ct);
                data.CopyTo(Model, off);
            }
            else if (kind < 80)
            {
                long first = _rng.NextInt64(blocks), n = 1 + _rng.Next(4);
                long off = first * bs, len = Math.Min(n * bs, size - off);
                await _volume.DiscardAsync(off, len, fua: false, ct);
                Clear(off, len, wholeBlocksOnly: true);
            }
            else if (kind < 92 || contentChangingOnly)
            {
                long first = _rng.NextInt64(blocks), n = 1 + _rng.Next(3);
                long off = first * bs, len = Math.Min(n * bs, size - off);
                await _volume.WriteZeroesAsync(off, len, noHole: false, fua: false, ct);
                Clear(off, len, wholeBlocksOnly: false);
            }
            else
            {
                long off = _rng.NextInt64(size);
                long len = Math.Min(size - off, 1 + _rng.Next((int)bs));
                await _volume.WriteZeroesAsync(off, len, noHole: _rng.Next(2) == 0, fua: false, ct);
                Clear(off, len, wholeBlocksOnly: false);
            }
        }
    }

    private void Clear(long off, long len, bool wholeBlocksOnly)
    {
        if (!wholeBlocksOnly)
        {
            Array.Clear(Model, (int)off, (int)len);
            return;
        }
        long bs = _volume.BlockSize;
        long from = (off + bs - 1) / bs * bs, to = (off + len) / bs * bs;
        if (off + len == _volume.Size)
            to = _volume.Size;
        if (to > from)
            Array.Clear(Model, (int)from, (int)(to - from));
    }
}
