namespace BackupAppliance.PersistentData.Tests.Support;

/// <summary>
/// A scratch metadata file with the engine stacked on it: block manager, transaction manager and a
/// metadata space map. <see cref="Commit"/> follows the commit order (space map, dirty blocks + fsync,
/// then the new state becomes the committed one); <see cref="Reopen"/> starts over from the file.
/// </summary>
public sealed class MetadataHarness : IDisposable
{
    private readonly string _dir;
    private readonly int _cacheBlocks;

    /// <param name="cacheBlocks">A small cache makes commits evict, so later reads come from disk.</param>
    public MetadataHarness(long bytes = 16L << 20, int cacheBlocks = 16384)
    {
        _cacheBlocks = cacheBlocks;
        _dir = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "bapp-pd-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(_dir);
        Path = System.IO.Path.Combine(_dir, "meta");
        using (var f = new FileStream(Path, FileMode.CreateNew))
            f.SetLength(bytes);
        Bm = new BlockManager(Path, writable: true, _cacheBlocks);
        Tm = new TransactionManager(Bm);
        Sm = MetadataSpaceMap.Create(Tm, Bm.NrBlocks);
    }

    public string Path { get; }
    public BlockManager Bm { get; private set; }
    public TransactionManager Tm { get; private set; }
    public MetadataSpaceMap Sm { get; private set; }

    /// <summary>The metadata space map root of the last commit (what a superblock would hold).</summary>
    public SpaceMapRoot SmRoot { get; private set; }

    /// <summary>Commits; <paramref name="before"/> runs first (e.g. a data space map's commit).</summary>
    public SpaceMapRoot Commit(Action? before = null, Action? after = null)
    {
        before?.Invoke();
        SmRoot = Sm.Commit();
        Bm.FlushDirty();
        Sm.OnCommitted();
        after?.Invoke();
        Tm.EndTransaction();
        return SmRoot;
    }

    /// <summary>Drops all in-memory state and opens the file again at the last commit.</summary>
    public void Reopen()
    {
        Bm.Dispose();
        Bm = new BlockManager(Path, writable: true, _cacheBlocks);
        Tm = new TransactionManager(Bm);
        Sm = MetadataSpaceMap.Open(Tm, SmRoot);
    }

    /// <summary>Overwrites one byte of a block on disk (behind the engine's back).</summary>
    public void CorruptByte(ulong block, int offset)
    {
        using var f = new FileStream(Path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        f.Position = (long)block * BlockManager.BlockSize + offset;
        int b = f.ReadByte();
        f.Position--;
        f.WriteByte((byte)(b ^ 0x5A));
    }

    /// <summary>Writes a whole block on disk, sealed as <paramref name="kind"/> (a well-formed but wrong block).</summary>
    public void WriteSealed(ulong block, byte[] data, BlockKind kind)
    {
        BlockChecksum.Seal(data, block, kind);
        using var f = new FileStream(Path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        f.Position = (long)block * BlockManager.BlockSize;
        f.Write(data, 0, BlockManager.BlockSize);
    }

    public byte[] ReadRaw(ulong block)
    {
        var data = new byte[BlockManager.BlockSize];
        Bm.ReadRaw(block, data);
        return data;
    }

    public void Dispose()
    {
        Bm.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
