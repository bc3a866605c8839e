namespace BackupAppliance.Thin.Delta;

/// <summary>thin_delta's default output: ranges of one kind merged while contiguous.</summary>
public sealed class SimpleDeltaEmitter : IDeltaVisitor
{
    private readonly TextWriter _out;
    private readonly bool _skipSame;
    private DeltaKind _kind;
    private ulong _begin, _len;

    public SimpleDeltaEmitter(TextWriter output, bool skipSame = false)
    {
        _out = output;
        _skipSame = skipSame;
    }

    public void Range(in DeltaRange r)
    {
        if (_skipSame && r.Kind == DeltaKind.Same)
            return;
        if (_len > 0 && r.Kind == _kind && _begin + _len == r.Begin)
        {
            _len += r.Length;
            return;
        }
        Flush();
        _kind = r.Kind;
        _begin = r.Begin;
        _len = r.Length;
    }

    public void Flush()
    {
        if (_len > 0)
            _out.Write($"    <{DeltaXml.Tag(_kind)} begin=\"{_begin}\" length=\"{_len}\"/>\n");
        _len = 0;
    }
}

/// <summary>thin_delta --verbose: consecutive ranges of one kind grouped, each with its data blocks.</summary>
public sealed class VerboseDeltaEmitter : IDeltaVisitor
{
    private readonly TextWriter _out;
    private DeltaKind? _open;

    public VerboseDeltaEmitter(TextWriter output) => _out = output;

    public void Range(in DeltaRange r)
    {
        if (_open != r.Kind)
        {
            Flush();
            _out.Write($"    <{DeltaXml.Tag(r.Kind)}>\n");
            _open = r.Kind;
        }
        switch (r.Kind)
        {
            case DeltaKind.Different:
                _out.Write($"      <range begin=\"{r.Begin}\" left_data_begin=\"{r.LeftDataBegin}\" right_data_begin=\"{r.RightDataBegin}\" length=\"{r.Length}\"/>\n");
                break;
            case DeltaKind.RightOnly:
                _out.Write($"      <range begin=\"{r.Begin}\" data_begin=\"{r.RightDataBegin}\" length=\"{r.Length}\"/>\n");
                break;
            default:
                _out.Write($"      <range begin=\"{r.Begin}\" data_begin=\"{r.LeftDataBegin}\" length=\"{r.Length}\"/>\n");
                break;
        }
    }

    public void Flush()
    {
        if (_open is { } k)
            _out.Write($"    </{DeltaXml.Tag(k)}>\n");
        _open = null;
    }
}

/// <summary>
/// Joins ranges of one kind that continue each other in virtual and data blocks, then passes them on
/// (turns the per-block output of the changes-only walk into runs).
/// </summary>
public sealed class MergingDeltaVisitor : IDeltaVisitor
{
    private readonly IDeltaVisitor _inner;
    private DeltaRange _pending;
    private bool _have;

    public MergingDeltaVisitor(IDeltaVisitor inner) => _inner = inner;

    public void Range(in DeltaRange r)
    {
        if (_have && _pending.Kind == r.Kind && _pending.Begin + _pending.Length == r.Begin
            && (r.Kind is DeltaKind.RightOnly || _pending.LeftDataBegin + _pending.Length == r.LeftDataBegin)
            && (r.Kind is DeltaKind.LeftOnly || _pending.RightDataBegin + _pending.Length == r.RightDataBegin))
        {
            _pending = _pending with { Length = _pending.Length + r.Length };
            return;
        }
        Flush();
        _pending = r;
        _have = true;
    }

    public void Flush()
    {
        if (_have)
            _inner.Range(_pending);
        _have = false;
    }
}

/// <summary>Collects ranges in memory (the library form the agent uses).</summary>
public sealed class DeltaCollector : IDeltaVisitor
{
    public List<DeltaRange> Ranges { get; } = new();

    public void Range(in DeltaRange r) => Ranges.Add(r);

    /// <summary>The changed ranges between two devices, merged into runs, skipping shared subtrees.</summary>
    public static List<DeltaRange> Changes(ThinReader reader, ulong leftRoot, ulong rightRoot)
    {
        var c = new DeltaCollector();
        var m = new MergingDeltaVisitor(c);
        ThinDelta.ChangesOnly(reader, leftRoot, rightRoot, m);
        m.Flush();
        return c.Ranges;
    }
}

public static class DeltaXml
{
    public static string Tag(DeltaKind kind) => kind switch
    {
        DeltaKind.Same => "same",
        DeltaKind.Different => "different",
        DeltaKind.LeftOnly => "left_only",
        DeltaKind.RightOnly => "right_only",
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Writes the whole thin_delta document for devices <paramref name="snap1"/> and <paramref name="snap2"/>.</summary>
    public static void Write(ThinReader reader, ulong snap1, ulong snap2, bool verbose, bool changesOnly, TextWriter output)
    {
        ulong left = reader.MappingRoot(snap1) ?? throw new KeyNotFoundException($"Unable to find mapping tree for snap1 ({snap1})");
        ulong right = reader.MappingRoot(snap2) ?? throw new KeyNotFoundException($"Unable to find mapping tree for snap2 ({snap2})");
        var sb = reader.Superblock;
        output.Write($"<superblock uuid=\"\" time=\"{sb.Time}\" transaction=\"{sb.TransactionId}\" data_block_size=\"{sb.DataBlockSize}\" nr_data_blocks=\"{reader.NrDataBlocks}\"");
        if (sb.HeldRoot != 0)
            output.Write($" metadata_snap=\"{sb.HeldRoot}\"");
        output.Write(">\n");
        output.Write($"  <diff left=\"{snap1}\" right=\"{snap2}\">\n");
        if (verbose)
        {
            var e = new VerboseDeltaEmitter(output);
            Run(reader, left, right, changesOnly, e);
            e.Flush();
        }
        else
        {
            var e = new SimpleDeltaEmitter(output, skipSame: changesOnly);
            Run(reader, left, right, changesOnly, e);
            e.Flush();
        }
        output.Write("  </diff>\n</superblock>\n");
    }

    private static void Run(ThinReader reader, ulong left, ulong right, bool changesOnly, IDeltaVisitor v)
    {
        if (changesOnly)
        {
            var m = new MergingDeltaVisitor(v);
            ThinDelta.ChangesOnly(reader, left, right, m);
            m.Flush();
        }
        else
            ThinDelta.Full(reader, left, right, v);
    }
}
