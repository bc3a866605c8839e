using BackupAppliance.Core;
using BackupAppliance.PersistentData;
using BackupAppliance.Thin.Tests.Support;

namespace BackupAppliance.Thin.Tests;

/// <summary>
/// A flipped byte in a superblock, btree node, bitmap or index block: opening or reading the metadata
/// fails with an error that names the block, instead of returning wrong data.
/// </summary>
public class CorruptionTests
{
    private static (TempDir dir, string file) MakePool()
    {
        var dir = Tool.TempDir();
        string file = dir.Sparse("meta", 16L << 20);
        using var md = ThinMetadata.Create(file, 128, 100_000);
        md.CreateThin(0);
        for (ulong v = 0; v < 2000; v++)
            md.Insert(0, v, md.AllocateDataBlock());
        md.Commit();
        md.CreateSnapshot(1, 0);
        md.Insert(0, 7, md.AllocateDataBlock());
        md.Commit();
        return (dir, file);
    }

    private static void Flip(string file, ulong block, int offset)
    {
        using var f = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
        f.Position = (long)block * 4096 + offset;
        int b = f.ReadByte();
        f.Position--;
        f.WriteByte((byte)(b ^ 0x40));
    }

    private static ThinSuperblock Superblock(string file)
    {
        using var r = ThinReader.Open(file);
        return r.Superblock;
    }

    [Theory]
    [InlineData(40)]   // version
    [InlineData(48)]   // transaction id
    [InlineData(200)]  // metadata space-map root
    [InlineData(4000)] // unused tail, still checksummed
    public void SuperblockFlipIsRefused(int offset)
    {
        var (dir, file) = MakePool();
        using var _ = dir;
        Flip(file, 0, offset);
        var e = Assert.Throws<CorruptMetadataException>(() => ThinMetadata.Open(file).Dispose());
        Assert.Equal(0UL, e.Block);
        Assert.Contains("checksum", e.Message);
        var r = Tool.Bapp("thin", "dump", file);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("block 0", r.Stderr);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void MappingLeafFlipIsReportedWithItsBlock()
    {
        var (dir, file) = MakePool();
        using var _ = dir;
        ulong leaf, keyInLeaf;
        using (var r = ThinReader.Open(file))
        {
            var root = r.ReadNode(r.MappingRoot(0)!.Value);
            Assert.True(root.IsInternal);
            leaf = root.Value64(1);
            keyInLeaf = root.Key(1);
        }
        Flip(file, leaf, 32 + 8 * 5); // a key
        using var md = ThinMetadata.Open(file);
        var e = Assert.Throws<CorruptMetadataException>(() => md.Lookup(0, keyInLeaf));
        Assert.Equal(leaf, e.Block);
        var dump = Tool.Bapp("thin", "dump", file);
        Assert.Equal(1, dump.ExitCode);
        Assert.Contains($"block {leaf}", dump.Stderr);
        Assert.NotEqual(0, Tool.Run("thin_check", file).ExitCode);
    }

    [Fact]
    public void InternalNodeFlipIsReportedWithItsBlock()
    {
        var (dir, file) = MakePool();
        using var _ = dir;
        ulong node = Superblock(file).DataMappingRoot; // top level of the 2-level tree
        Flip(file, node, 24); // value_size
        var e = Assert.Throws<CorruptMetadataException>(() => ThinMetadata.Open(file).Dispose());
        Assert.Equal(node, e.Block);
    }

    [Fact]
    public void MetadataBitmapFlipIsRefusedAtOpen()
    {
        var (dir, file) = MakePool();
        using var _ = dir;
        var sb = Superblock(file);
        ulong index = sb.MetadataSpaceMapRoot.BitmapRoot;
        ulong bitmap;
        using (var bm = new BlockManager(file, writable: false))
            bitmap = IndexEntry.Read(bm.Read(index, BlockKind.MetadataIndex).Data.AsSpan(16)).BlockNr;
        Flip(file, bitmap, 100);
        var e = Assert.Throws<CorruptMetadataException>(() => ThinMetadata.Open(file).Dispose());
        Assert.Equal(bitmap, e.Block);
    }

    [Fact]
    public void MetadataIndexFlipIsRefusedAtOpen()
    {
        var (dir, file) = MakePool();
        using var _ = dir;
        ulong index = Superblock(file).MetadataSpaceMapRoot.BitmapRoot;
        Flip(file, index, 20);
        var e = Assert.Throws<CorruptMetadataException>(() => ThinMetadata.Open(file).Dispose());
        Assert.Equal(index, e.Block);
    }

    [Fact]
    public void DataSpaceMapIndexFlipIsRefusedAtOpen()
    {
        var (dir, file) = MakePool();
        using var _ = dir;
        ulong index = Superblock(file).DataSpaceMapRoot.BitmapRoot;
        Flip(file, index, 40);
        var e = Assert.Throws<CorruptMetadataException>(() => ThinMetadata.Open(file).Dispose());
        Assert.Equal(index, e.Block);
    }

    [Fact]
    public void WrongMagicWithValidChecksumIsRefused()
    {
        // thin_check 0.9.0 accepts this (it checks only the checksum); we do not.
        var (dir, file) = MakePool();
        using var _ = dir;
        var raw = new byte[4096];
        using (var bm = new BlockManager(file, writable: true))
        {
            bm.ReadRaw(0, raw);
            raw[33] ^= 1;
            bm.WriteSuperblock(0, raw, BlockKind.ThinSuperblock);
        }
        var e = Assert.Throws<CorruptMetadataException>(() => ThinMetadata.Open(file).Dispose());
        Assert.Contains("magic", e.Message);
    }
}

/// <summary>Metadata space running out is an error the caller handles, never a corrupt file.</summary>
public class MetadataSpaceTests
{
    [Fact]
    public void ExhaustedMetadataFailsTheTransactionAndAbortReturnsToTheLastCommit()
    {
        using var dir = Tool.TempDir();
        string file = dir.Sparse("meta", 64 * 4096); // 64 metadata blocks
        using var md = ThinMetadata.Create(file, 128, 100_000);
        md.CreateThin(0);
        for (ulong v = 0; v < 100; v++)
            md.Insert(0, v, md.AllocateDataBlock());
        md.Commit();
        var rng = new Random(3);
        Assert.Throws<SpaceExhaustedException>(() =>
        {
            for (int i = 0; i < 1_000_000; i++)
                md.Insert(0, (ulong)rng.Next(10_000_000), md.AllocateDataBlock());
        });
        Assert.True(md.TransactionFailed);
        Assert.Throws<InvalidOperationException>(() => md.Commit());
        md.Abort();
        Assert.False(md.TransactionFailed);
        Assert.Equal(100UL, md.GetDetails(0).MappedBlocks);
        Oracle.AssertCheckPasses(file, "after exhausting metadata and aborting");
        md.Insert(0, 500, md.AllocateDataBlock());
        md.Commit();
        Oracle.AssertCheckPasses(file, "after a further commit");
    }
}
