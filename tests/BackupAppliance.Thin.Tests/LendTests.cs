using BackupAppliance.Core;
using BackupAppliance.Thin.Pool;
using BackupAppliance.Thin.Tests.Support;
using Microsoft.Win32.SafeHandles;
using static BackupAppliance.Thin.Tests.Support.VolumeBytes;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// A volume lending its bytes (what the NBD server splices into the socket instead of copying):
/// the pieces say where in the data file each byte lies, or that it reads as zeroes, and together
/// they are exactly what a read returns.
/// </summary>
public class LendTests
{
    private const int Bs = 65536;

    [Fact]
    public async Task LentPiecesAreTheBytesAReadReturnsWithRunsOfAdjacentBlocksAsOnePiece()
    {
        using var dir = Tool.TempDir();
        await using var pool = ThinPool.Create(dir.File("pool"), 64L * Bs, new PoolSettings());
        var v = pool.CreateVolume("v", 32L * Bs);
        await v.WriteAsync(0, Bytes(16 * Bs, 1), false, default);   // blocks 0-15, side by side in the data file
        var snapshot = pool.Snapshot("v", "snap");
        await v.WriteAsync(5L * Bs + 4096, Bytes(8192, 2), false, default); // breaks sharing: block 5 moves
        await v.DiscardAsync(9L * Bs, 2L * Bs, false, default);              // blocks 9 and 10 become holes
        await v.WriteAsync(20L * Bs, Bytes(Bs, 3), false, default);          // an island past a hole

        foreach (var (volume, offset, length) in new (IBlockVolume, long, int)[]
        {
            (v, 0, 24 * Bs),
            (v, 3L * Bs + 512, 3 * Bs),   // unaligned, across the moved block
            (snapshot, 0, 24 * Bs),
        })
        {
            var sink = new ReadingSink();
            Assert.True(await volume.TryLendAsync(offset, length, sink, default));
            Assert.Equal(await Read(volume, offset, length), sink.Bytes.ToArray());
        }

        // The origin: blocks 0-4 and 6-8 are one run each, broken by moved block 5, then zeroes for
        // 9-10 (discarded) and 11-15 mapped again.
        var pieces = new ReadingSink();
        await v.TryLendAsync(0, 16 * Bs, pieces, default);
        Assert.Equal(["file 5", "file 1", "file 3", "zeroes 2", "file 5"], pieces.Pieces.Select(p => $"{p.Kind} {p.Length / Bs}"));
        // The snapshot's 16 blocks are still one run.
        var snapshotPieces = new ReadingSink();
        await snapshot.TryLendAsync(0, 16 * Bs, snapshotPieces, default);
        Assert.Equal(["file 16"], snapshotPieces.Pieces.Select(p => $"{p.Kind} {p.Length / Bs}"));
    }

    [Fact]
    public async Task AVolumeWithAnExternalOriginDoesNotLend()
    {
        using var dir = Tool.TempDir();
        string image = dir.File("origin.img");
        await File.WriteAllBytesAsync(image, Bytes(4 * Bs, 4));
        await using var pool = ThinPool.Create(dir.File("pool"), 16L * Bs, new PoolSettings());
        var v = pool.CreateVolume("v", 4L * Bs, image);
        await v.WriteAsync(0, Bytes(Bs, 5), false, default);

        var sink = new ReadingSink();
        Assert.False(await v.TryLendAsync(0, 4 * Bs, sink, default));
        Assert.Empty(sink.Pieces);
    }

    [Fact]
    public async Task ALendOutsideTheVolumeIsRefusedAndTakesNothing()
    {
        using var dir = Tool.TempDir();
        await using var pool = ThinPool.Create(dir.File("pool"), 16L * Bs, new PoolSettings());
        var v = pool.CreateVolume("v", 4L * Bs);
        var sink = new ReadingSink();
        var e = await Assert.ThrowsAsync<VolumeException>(async () => await v.TryLendAsync(3L * Bs, 2 * Bs, sink, default));
        Assert.Equal(VolumeError.InvalidArgument, e.Error);
        Assert.Empty(sink.Pieces);
    }

    /// <summary>Reads each lent file piece at once (as a splice would take it) and records the pieces.</summary>
    private sealed class ReadingSink : IVolumeLendSink
    {
        public MemoryStream Bytes { get; } = new();
        public List<(string Kind, int Length)> Pieces { get; } = [];

        public void TakeFile(SafeFileHandle file, long fileOffset, int length)
        {
            var buffer = new byte[length];
            Assert.Equal(length, RandomAccess.Read(file, buffer, fileOffset));
            Bytes.Write(buffer);
            Pieces.Add(("file", length));
        }

        public void TakeZeroes(int length)
        {
            Bytes.Write(new byte[length]);
            Pieces.Add(("zeroes", length));
        }
    }
}
