namespace BackupAppliance.Era.Dump;

/// <summary>
/// era_dump's XML, byte for byte: two spaces of indent per level, one <c>&lt;bit&gt;</c> per writeset bit
/// and one <c>&lt;era&gt;</c> per block. Numbers are formatted into a reused buffer: a dump of a large
/// volume has millions of lines.
/// </summary>
public sealed class EraXmlEmitter : IEraVisitor
{
    private readonly TextWriter _out;
    private readonly char[] _number = new char[16];

    public EraXmlEmitter(TextWriter output) => _out = output;

    public void BeginSuperblock(in EraSuperblockInfo sb)
    {
        _out.Write("<superblock uuid=\"");
        _out.Write(sb.Uuid);
        _out.Write("\" block_size=\"");
        Number(sb.BlockSize);
        _out.Write("\" nr_blocks=\"");
        Number(sb.NrBlocks);
        _out.Write("\" current_era=\"");
        Number(sb.CurrentEra);
        _out.Write("\">\n");
    }

    public void EndSuperblock() => _out.Write("</superblock>\n");

    public void BeginWriteset(uint era, uint nrBits)
    {
        _out.Write("  <writeset era=\"");
        Number(era);
        _out.Write("\" nr_bits=\"");
        Number(nrBits);
        _out.Write("\">\n");
    }

    public void WritesetBit(uint bit, bool value)
    {
        _out.Write("    <bit block=\"");
        Number(bit);
        _out.Write(value ? "\" value=\"true\"/>\n" : "\" value=\"false\"/>\n");
    }

    public void EndWriteset() => _out.Write("  </writeset>\n");

    public void BeginEraArray() => _out.Write("  <era_array>\n");

    public void Era(uint block, uint era)
    {
        _out.Write("    <era block=\"");
        Number(block);
        _out.Write("\" era=\"");
        Number(era);
        _out.Write("\"/>\n");
    }

    public void EndEraArray() => _out.Write("  </era_array>\n");

    private void Number(uint n)
    {
        n.TryFormat(_number, out int written, default, System.Globalization.CultureInfo.InvariantCulture);
        _out.Write(_number, 0, written);
    }
}
