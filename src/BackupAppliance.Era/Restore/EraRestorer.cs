using System.Buffers.Binary;
using System.Text;
using BackupAppliance.Era.Dump;

namespace BackupAppliance.Era.Restore;

/// <summary>
/// era_restore: builds era metadata from the intermediate representation (<see cref="EraXmlReader"/>)
/// into an existing output file, with the tool's checks on that file and its rules (a writeset or the
/// era array outside the superblock, a bit past nr_bits, an era past nr_blocks are errors). The current
/// writeset is left empty, as era_restore does. On any error the superblock is zeroed, so a half-written
/// file is never taken for metadata.
/// </summary>
public sealed class EraRestorer : IEraVisitor
{
    /// <summary>era_restore's smallest regular output file.</summary>
    public const long MinOutputSize = 32 * 1024;

    private const string Explanation =
        "The output file should either be a block device,\nor an existing file.  The file needs to be large\nenough to hold the metadata.";

    private readonly string _path;
    private EraMetadata? _md;
    private uint _nrBlocks;
    private bool _inWriteset, _inEraArray, _done;
    private uint _era, _nrBits;
    private readonly Dictionary<uint, ulong> _words = new();
    private Memory<byte> _eraBlock;
    private ulong _eraBlockIndex = ulong.MaxValue;

    private EraRestorer(string path) => _path = path;

    /// <summary>Restores <paramref name="xmlPath"/> into <paramref name="outputPath"/>; bad input changes nothing it can avoid.</summary>
    public static void RestoreFile(string xmlPath, string outputPath)
    {
        CheckOutputFile(outputPath);
        if (!File.Exists(xmlPath))
            throw new FileNotFoundException($"input file {xmlPath} does not exist", xmlPath);
        var r = new EraRestorer(outputPath);
        try
        {
            using (var input = new StreamReader(xmlPath))
                EraXmlReader.Read(input, r);
            if (!r._done)
                throw new FormatException("xml missing superblock");
        }
        catch
        {
            r._md?.Close();
            EraMetadata.ZeroSuperblock(outputPath);
            throw;
        }
    }

    /// <summary>The output requirements of era_restore (and thin_restore), with their words.</summary>
    public static void CheckOutputFile(string path)
    {
        if (Directory.Exists(path))
            throw new ArgumentException($"bad path: {path} is a directory");
        if (!File.Exists(path))
            throw new FileNotFoundException($"Output file does not exist.\n\n{Explanation}", path);
        long size = new FileInfo(path).Length;
        if (size == 0)
            throw new ArgumentException($"Zero size output file.\n\n{Explanation}");
        if (size < MinOutputSize)
            throw new ArgumentException($"Output file too small.\n\n{Explanation}");
    }

    public void BeginSuperblock(in EraSuperblockInfo sb)
    {
        if (_md is not null)
            throw new FormatException("more than one superblock");
        _nrBlocks = sb.NrBlocks;
        _md = EraMetadata.Format(_path, sb.BlockSize, sb.NrBlocks, sb.CurrentEra, Encoding.UTF8.GetBytes(sb.Uuid));
    }

    public void EndSuperblock()
    {
        var md = _md ?? throw new FormatException("xml missing superblock");
        md.Commit();
        md.Close();
        _md = null;
        _done = true;
    }

    public void BeginWriteset(uint era, uint nrBits)
    {
        if (_md is null)
            throw new FormatException("missing superblock");
        if (_inWriteset)
            throw new FormatException("attempt to begin writeset when already in one");
        _inWriteset = true;
        _era = era;
        _nrBits = nrBits;
        _words.Clear();
    }

    public void WritesetBit(uint bit, bool value)
    {
        if (!_inWriteset)
            throw new FormatException("bit outside a writeset");
        if (bit >= _nrBits)
            throw new FormatException($"bit {bit} is beyond the writeset's nr_bits {_nrBits} (era {_era})");
        uint w = bit / 64;
        ulong mask = 1UL << (int)(bit % 64);
        ulong old = _words.GetValueOrDefault(w);
        ulong now = value ? old | mask : old & ~mask;
        if (now == 0)
            _words.Remove(w);
        else
            _words[w] = now;
    }

    public void EndWriteset()
    {
        _inWriteset = false;
        _md!.RestoreWriteset(_era, _nrBits, _words);
        _eraBlockIndex = ulong.MaxValue; // the metadata changed: take the era block again
    }

    public void BeginEraArray()
    {
        if (_md is null)
            throw new FormatException("missing superblock");
        _inEraArray = true;
    }

    public void Era(uint block, uint era)
    {
        if (!_inEraArray)
            throw new FormatException("missing era array");
        if (block >= _nrBlocks)
            throw new FormatException($"era of block {block} is beyond nr_blocks {_nrBlocks} (array_block index out of bounds)");
        ulong k = block / (ulong)EraLayout.ErasPerArrayBlock;
        if (k != _eraBlockIndex)
        {
            _eraBlock = _md!.WritableEraBlock(k);
            _eraBlockIndex = k;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(_eraBlock.Span[((int)(block % (ulong)EraLayout.ErasPerArrayBlock) * sizeof(uint))..], era);
    }

    public void EndEraArray() => _inEraArray = false;
}
