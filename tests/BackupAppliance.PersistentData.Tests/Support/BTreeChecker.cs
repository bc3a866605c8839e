using System.Buffers.Binary;

namespace BackupAppliance.PersistentData.Tests.Support;

/// <summary>
/// Walks a committed btree from its raw on-disk nodes (parsed here, not through <see cref="BTreeNode"/>)
/// and asserts what the kernel and thin_check 0.9.0 require of every node (FORMATS.md §2.1, §2.4).
/// </summary>
public static class BTreeChecker
{
    public sealed class Shape
    {
        public int Depth { get; set; }
        public long Entries { get; set; }
        public List<ulong> Nodes { get; } = new();
    }

    /// <summary>max_entries computed independently of the engine: fit, then round down to a multiple of 3.</summary>
    public static int ExpectedMaxEntries(int valueSize) => 3 * ((4096 - 32) / (8 + valueSize) / 3);

    public static Shape Check(MetadataHarness h, ulong root, int valueSize, string context, Action<ulong, ReadOnlySpan<byte>>? entry = null)
    {
        var shape = new Shape();
        ulong? lastLeafKey = null;
        int leafDepth = -1;

        void Walk(ulong loc, int depth, bool isRoot, ulong? lower, ulong? upper)
        {
            shape.Nodes.Add(loc);
            var d = h.ReadRaw(loc);
            string where = $"{context}: node {loc} (depth {depth})";
            Assert.True(BlockChecksum.Problem(d, loc, BlockKind.BTreeNode) is null, $"{where}: {BlockChecksum.Problem(d, loc, BlockKind.BTreeNode)}");
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(4));
            int nr = (int)BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(16));
            int max = (int)BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(20));
            int vs = (int)BinaryPrimitives.ReadUInt32LittleEndian(d.AsSpan(24));
            Assert.True(flags is 1 or 2, $"{where}: flags {flags}");
            bool leaf = flags == 2;
            int wantVs = leaf ? valueSize : 8;
            Assert.True(vs == wantVs, $"{where}: value_size {vs}, expected {wantVs}");
            Assert.True(max == ExpectedMaxEntries(wantVs), $"{where}: max_entries {max}, expected {ExpectedMaxEntries(wantVs)}");
            Assert.True(max % 3 == 0, $"{where}: max_entries {max} is not a multiple of 3");
            Assert.True(32 + (8 + vs) * max <= 4096, $"{where}: {max} entries of {vs} bytes do not fit");
            Assert.True(nr <= max, $"{where}: nr_entries {nr} > max_entries {max}");
            if (!isRoot)
                Assert.True(nr >= max / 3, $"{where}: too few entries: {nr}, expected at least {max / 3}");
            if (!leaf)
                Assert.True(nr >= 1, $"{where}: internal node without entries");

            var keys = new ulong[nr];
            for (int i = 0; i < nr; i++)
            {
                keys[i] = BinaryPrimitives.ReadUInt64LittleEndian(d.AsSpan(32 + 8 * i));
                if (i > 0)
                    Assert.True(keys[i] > keys[i - 1], $"{where}: keys not strictly increasing at {i}: {keys[i - 1]}, {keys[i]}");
            }
            if (nr > 0 && lower is ulong lo)
                Assert.True(lo <= keys[0], $"{where}: parent key {lo} > first key {keys[0]}");
            if (nr > 0 && upper is ulong hi)
                Assert.True(keys[nr - 1] < hi, $"{where}: last key {keys[nr - 1]} not below the parent's next key {hi}");

            int valuesAt = 32 + 8 * max;
            if (leaf)
            {
                if (leafDepth < 0)
                    leafDepth = depth;
                Assert.True(depth == leafDepth, $"{where}: leaf at depth {depth}, other leaves at {leafDepth}");
                if (nr > 0 && lastLeafKey is ulong last)
                    Assert.True(keys[0] > last, $"{where}: first key {keys[0]} not above the previous leaf's last key {last}");
                for (int i = 0; i < nr; i++)
                    entry?.Invoke(keys[i], d.AsSpan(valuesAt + vs * i, vs));
                if (nr > 0)
                    lastLeafKey = keys[nr - 1];
                shape.Entries += nr;
                return;
            }
            for (int i = 0; i < nr; i++)
            {
                ulong child = BinaryPrimitives.ReadUInt64LittleEndian(d.AsSpan(valuesAt + 8 * i));
                Walk(child, depth + 1, isRoot: false, keys[i], i + 1 < nr ? keys[i + 1] : upper);
            }
        }

        Walk(root, 1, isRoot: true, null, null);
        shape.Depth = leafDepth;
        return shape;
    }
}
