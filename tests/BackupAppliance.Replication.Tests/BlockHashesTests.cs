using BackupAppliance.Replication.Integrity;
using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Tests;

/// <summary>Block hashes against an independent implementation: Debian's xxhsum (package xxhash).</summary>
public sealed class BlockHashesTests
{
    private const int Block = 64 * 1024;

    public static TheoryData<string, int> Blocks => new()
    {
        { "file data", Block },
        { "zeros", Block },
        { "smallest block", WireProtocol.MinBlockSize },
        { "largest block", WireProtocol.MaxBlockSize },
        { "short tail", 100 },
        { "one byte", 1 },
    };

    [Theory]
    [MemberData(nameof(Blocks))]
    public async Task A_blocks_hash_is_what_xxhsum_prints_for_XXH3_128(string kind, int length)
    {
        var block = kind == "zeros" ? new byte[length] : SampleData.Disk(length, length);
        var ours = new byte[WireProtocol.BlockHashSize];
        BlockHashes.Hash(block, ours);

        var r = await ExternalProcess.RunOkAsync("xxhsum", ["-H2", "-"], block);
        Assert.Equal(r.Text.Split(' ')[0], Convert.ToHexStringLower(ours));
        if (kind == "zeros")
            Assert.Equal(ours, BlockHashes.OfZeros(length));
    }

    [Fact]
    public async Task An_extents_hashes_are_each_blocks_hash_in_order_and_a_changed_byte_is_found()
    {
        const int length = 5 * Block + 4096; // a short last block
        var data = SampleData.Disk(length, 31);
        data.AsSpan(2 * Block, Block).Clear();
        var hashes = new byte[BlockHashes.Count(length, Block) * WireProtocol.BlockHashSize];
        BlockHashes.Compute(data, Block, hashes);

        for (int i = 0; i < 6; i++)
        {
            var block = data.AsMemory(i * Block, Math.Min(Block, length - i * Block));
            var r = await ExternalProcess.RunOkAsync("xxhsum", ["-H2", "-"], block);
            Assert.Equal(r.Text.Split(' ')[0], Convert.ToHexStringLower(hashes.AsSpan(i * WireProtocol.BlockHashSize, WireProtocol.BlockHashSize)));
        }

        Assert.Equal(-1, BlockHashes.FindMismatch(data, Block, hashes));
        data[3 * Block + 12345] ^= 0x10;
        Assert.Equal(3, BlockHashes.FindMismatch(data, Block, hashes));
        data[3 * Block + 12345] ^= 0x10;
        data[^1] ^= 0x01;
        Assert.Equal(5, BlockHashes.FindMismatch(data, Block, hashes));
    }
}
