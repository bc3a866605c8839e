using System.Buffers.Binary;

namespace BackupAppliance.PersistentData.Tests.Support;

/// <summary>
/// Reads a committed dm-array from raw blocks (FORMATS.md §6.1): the btree must map 0..n-1 to array
/// blocks whose headers say {max_entries, nr_entries, value_size} correctly, all full but the last,
/// with unused slots zero. Returns the element bytes in order and each position's block location.
/// </summary>
public static class ArrayChecker
{
    public static (List<byte[]> Values, List<ulong> Blocks) Check(MetadataHarness h, ulong root, int valueSize, ulong expectedLength, string ctx)
    {
        var blocks = new List<ulong>();
        var keys = new List<ulong>();
        BTreeChecker.Check(h, root, 8, ctx + ", array btree", (k, v) =>
        {
            keys.Add(k);
            blocks.Add(BinaryPrimitives.ReadUInt64LittleEndian(v));
        });
        int max = (4096 - 24) / valueSize;
        int nBlocks = (int)((expectedLength + (ulong)max - 1) / (ulong)max);
        Assert.True(blocks.Count == nBlocks, $"{ctx}: {blocks.Count} array blocks, expected {nBlocks} for {expectedLength} entries");
        var values = new List<byte[]>();
        for (int j = 0; j < nBlocks; j++)
        {
            Assert.True(keys[j] == (ulong)j, $"{ctx}: btree key {keys[j]} at position {j}");
            ulong loc = blocks[j];
            var d = h.ReadRaw(loc);
            string where = $"{ctx}: array block {j} at {loc}";
            Assert.True(BlockChecksum.Problem(d, loc, BlockKind.ArrayBlock) is null, $"{where}: {BlockChecksum.Problem(d, loc, BlockKind.ArrayBlock)}");
            int wantNr = j < nBlocks - 1 ? max : (int)(expectedLength - (ulong)j * (ulong)max);
            Assert.True(BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(4)) == (uint)max, $"{where}: max_entries");
            Assert.True(BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(8)) == (uint)wantNr, $"{where}: nr_entries {BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(8))}, expected {wantNr}");
            Assert.True(BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(12)) == (uint)valueSize, $"{where}: value_size");
            Assert.True(BinaryPrimitives.ReadUInt64LittleEndian(d.AsSpan(16)) == loc, $"{where}: blocknr");
            for (int i = 0; i < wantNr; i++)
                values.Add(d.AsSpan(24 + i * valueSize, valueSize).ToArray());
            Assert.True(d.AsSpan(24 + wantNr * valueSize).IndexOfAnyExcept((byte)0) < 0, $"{where}: unused slots are not zero");
        }
        return (values, blocks);
    }
}
