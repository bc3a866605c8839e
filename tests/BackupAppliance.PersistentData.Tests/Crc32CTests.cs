using System.Text;
using BackupAppliance.Core;

namespace BackupAppliance.PersistentData.Tests;

/// <summary>CRC-32C and the salted dm block checksum against published and FORMATS.md §11.1 vectors.</summary>
public class Crc32CTests
{
    [Fact]
    public void Standard_check_value()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute(Encoding.ASCII.GetBytes("123456789")));
        Assert.Equal(0u, Crc32C.Compute(ReadOnlySpan<byte>.Empty));
    }

    [Fact]
    public void Hardware_path_matches_software_table()
    {
        const int seed = 20261121;
        var rng = new Random(seed);
        for (int round = 0; round < 300; round++)
        {
            var buf = new byte[rng.Next(0, 9000)];
            rng.NextBytes(buf);
            uint init = (uint)rng.NextInt64(0, 1L << 32);
            // Offsets that are not multiples of 8 exercise the byte-at-a-time tail of the hardware loop.
            int start = buf.Length == 0 ? 0 : rng.Next(0, Math.Min(8, buf.Length));
            var span = buf.AsSpan(start);
            Assert.True(Crc32C.UpdateSoftware(init, span) == Crc32C.Update(init, span),
                $"seed {seed}, round {round}, length {span.Length}");
        }
    }

    [Fact]
    public void Zero_block_raw_register()
    {
        var block = new byte[BlockChecksum.BlockSize];
        Assert.Equal(0x58CDA791u, Crc32C.Update(0xFFFFFFFF, block.AsSpan(4)));
        Assert.Equal(0x58CDA791u, Crc32C.UpdateSoftware(0xFFFFFFFF, block.AsSpan(4)));
    }

    [Theory]
    [InlineData(BlockKind.ThinSuperblock, 0x58CFD397u)]
    [InlineData(BlockKind.BTreeNode, 0x58CC7E82u)]
    [InlineData(BlockKind.Bitmap, 0x58CE0B1Au)]
    [InlineData(BlockKind.MetadataIndex, 0x58CFD54Fu)]
    [InlineData(BlockKind.ArrayBlock, 0x7B4E41DEu)]
    [InlineData(BlockKind.EraSuperblock, 0x5076581Cu)]
    [InlineData(BlockKind.CloneSuperblock, 0x5796CCC5u)]
    public void Zero_block_stored_checksum_per_kind(BlockKind kind, uint expected)
    {
        var block = new byte[BlockChecksum.BlockSize];
        // Bytes 0..3 hold the checksum itself and are not covered.
        block[0] = 0xAB;
        block[3] = 0xCD;
        Assert.Equal(expected, BlockChecksum.Compute(block, BlockKinds.Salt(kind)));
    }

    [Fact]
    public void Sealed_block_validates_and_a_flipped_byte_or_wrong_location_does_not()
    {
        var block = new byte[BlockChecksum.BlockSize];
        new Random(7).NextBytes(block);
        BlockChecksum.Seal(block, 42, BlockKind.ArrayBlock);
        Assert.Null(BlockChecksum.Problem(block, 42, BlockKind.ArrayBlock));
        Assert.Contains("bad block nr", BlockChecksum.Problem(block, 43, BlockKind.ArrayBlock));
        Assert.Contains("bad checksum", BlockChecksum.Problem(block, 42, BlockKind.BTreeNode));
        block[4000] ^= 1;
        var e = Assert.Throws<CorruptMetadataException>(() => BlockChecksum.Validate(block, 42, BlockKind.ArrayBlock));
        Assert.Equal(42ul, e.Block);
    }
}
