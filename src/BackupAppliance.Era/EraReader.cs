using BackupAppliance.Core;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Era;

/// <summary>
/// A read-only view of era metadata for the tools, as lenient as thin-provisioning-tools 0.9.0: the
/// superblock is judged by its checksum alone, no space map is needed (so kernel-made metadata
/// reads too); every btree node and array block read is still checksum- and location-checked, and
/// arrays are walked strictly (<see cref="ArrayWalk"/>).
/// </summary>
public sealed class EraReader : IDisposable
{
    private readonly BlockManager _bm;
    private readonly BTree _writesets;
    private readonly ArrayTree _words;
    private readonly ArrayTree _eras;

    private EraReader(BlockManager bm, EraSuperblock sb)
    {
        _bm = bm;
        var tm = new TransactionManager(bm);
        _writesets = new BTree(tm, new PlainValue(Writeset.Size));
        _words = new ArrayTree(tm, sizeof(ulong));
        _eras = new ArrayTree(tm, sizeof(uint));
        Superblock = sb;
    }

    public EraSuperblock Superblock { get; }

    public static EraReader Open(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException($"{path}: no such file", path);
        var bm = new BlockManager(path, writable: false, cacheBlocks: 1024);
        try
        {
            if (bm.NrBlocks == 0)
                throw new InvalidDataException("Metadata is not large enough for superblock.");
            var raw = new byte[BlockChecksum.BlockSize];
            bm.ReadRaw(0, raw);
            return new EraReader(bm, EraSuperblock.ReadChecksummed(raw));
        }
        catch
        {
            bm.Dispose();
            throw;
        }
    }

    /// <summary>The archived writesets in ascending era order; returning false stops.</summary>
    public void VisitWritesets(Func<uint, Writeset, bool> visit)
    {
        _writesets.VisitRange(Superblock.WritesetTreeRoot, 0, ulong.MaxValue, (k, v) =>
        {
            if (v.Length != Writeset.Size)
                throw new CorruptMetadataException(Superblock.WritesetTreeRoot, $"writeset tree leaf has value_size {v.Length}, expected {Writeset.Size}");
            if (k > uint.MaxValue)
                throw new CorruptMetadataException(Superblock.WritesetTreeRoot, $"writeset tree holds era {k}, beyond 32 bits");
            return visit((uint)k, Writeset.Read(v));
        });
    }

    /// <summary>The words of a writeset's bitset, block by block (u64 little-endian values).</summary>
    public void VisitBitset(uint era, Writeset ws, ArrayBlockVisitor visit) =>
        ArrayWalk.Blocks(_words, ws.Root, Bitset.WordsFor(ws.NrBits), $"writeset of era {era}", visit);

    /// <summary>The era array, block by block (u32 little-endian values); it must hold nr_blocks entries.</summary>
    public void VisitEraArray(ArrayBlockVisitor visit) =>
        ArrayWalk.Blocks(_eras, Superblock.EraArrayRoot, Superblock.NrBlocks, "era array", visit);

    /// <summary>The era array blocks that cover [0, nr_blocks), leniently (era_invalidate reads entry by entry).</summary>
    public void VisitEraArrayPrefix(ArrayBlockVisitor visit)
    {
        ulong per = (ulong)_eras.EntriesPerBlock;
        ulong blocks = (Superblock.NrBlocks + per - 1) / per;
        ulong next = 0;
        _eras.VisitBlockRange(Superblock.EraArrayRoot, 0, blocks, (k, loc, values) =>
        {
            ulong nr = (ulong)(values.Length / sizeof(uint));
            ulong needed = Math.Min(per, Superblock.NrBlocks - k * per);
            if (k != next)
                throw new CorruptMetadataException(loc, $"era array: no entry for block {next * per} (array block {next} is missing)");
            if (nr < needed)
                throw new CorruptMetadataException(loc, $"era array: no entry for block {k * per + nr} (array_block index out of bounds)");
            next++;
            return visit(k, loc, values);
        });
        if (next != blocks)
            throw new CorruptMetadataException(Superblock.EraArrayRoot, $"era array: no entry for block {next * per} (array_block index out of bounds)");
    }

    public void Dispose() => _bm.Dispose();
}
