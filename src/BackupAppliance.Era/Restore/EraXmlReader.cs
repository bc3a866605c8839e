using System.Globalization;
using System.Xml;
using BackupAppliance.Era.Dump;

namespace BackupAppliance.Era.Restore;

/// <summary>
/// Parses era_dump XML into <see cref="IEraVisitor"/> calls with era_restore's rules: required
/// attributes, <c>value</c> "true" or "false", writesets and the era array inside the superblock,
/// bits inside a writeset, eras inside the era array; any other element is an error.
/// </summary>
public static class EraXmlReader
{
    public static void Read(TextReader input, IEraVisitor visitor)
    {
        var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, IgnoreComments = true, IgnoreWhitespace = true };
        using var xml = XmlReader.Create(input, settings);
        var open = new Stack<string>();
        bool sawSuperblock = false;
        try
        {
            while (xml.Read())
            {
                if (xml.NodeType == XmlNodeType.Element)
                {
                    bool empty = xml.IsEmptyElement;
                    string parent = open.Count == 0 ? "" : open.Peek();
                    switch (xml.Name)
                    {
                        case "superblock":
                            if (sawSuperblock)
                                throw Error(xml, "more than one <superblock>");
                            sawSuperblock = true;
                            ulong nrBlocks = U64(xml, "nr_blocks");
                            if (nrBlocks > EraMetadata.MaxNrBlocks)
                                throw Error(xml, $"nr_blocks {nrBlocks} is too large (at most {EraMetadata.MaxNrBlocks})");
                            visitor.BeginSuperblock(new EraSuperblockInfo(
                                xml.GetAttribute("uuid") ?? throw Missing(xml, "uuid"),
                                U32(xml, "block_size"), (uint)nrBlocks, U32(xml, "current_era")));
                            break;
                        case "writeset":
                            Require(xml, parent, "superblock");
                            visitor.BeginWriteset(U32(xml, "era"), U32(xml, "nr_bits"));
                            break;
                        case "bit":
                            Require(xml, parent, "writeset");
                            uint bit = U32(xml, "block");
                            string value = xml.GetAttribute("value") ?? throw Missing(xml, "value");
                            visitor.WritesetBit(bit, value switch
                            {
                                "true" => true,
                                "false" => false,
                                _ => throw Error(xml, $"invalid boolean value=\"{value}\" in <bit> (true or false)"),
                            });
                            break;
                        case "era_array":
                            Require(xml, parent, "superblock");
                            visitor.BeginEraArray();
                            break;
                        case "era":
                            Require(xml, parent, "era_array");
                            visitor.Era(U32(xml, "block"), U32(xml, "era"));
                            break;
                        default:
                            throw Error(xml, $"unknown tag type <{xml.Name}>");
                    }
                    if (empty)
                        End(xml.Name, visitor);
                    else
                        open.Push(xml.Name);
                }
                else if (xml.NodeType == XmlNodeType.EndElement)
                {
                    open.Pop();
                    End(xml.Name, visitor);
                }
            }
        }
        catch (XmlException e)
        {
            throw new FormatException($"XML is malformed: {e.Message}", e);
        }
        if (!sawSuperblock)
            throw new FormatException("xml missing superblock");
    }

    private static void End(string element, IEraVisitor visitor)
    {
        switch (element)
        {
            case "superblock": visitor.EndSuperblock(); break;
            case "writeset": visitor.EndWriteset(); break;
            case "era_array": visitor.EndEraArray(); break;
        }
    }

    private static void Require(XmlReader xml, string parent, string expected)
    {
        if (parent != expected)
            throw Error(xml, $"<{xml.Name}> must be inside <{expected}>");
    }

    private static FormatException Error(XmlReader xml, string what) =>
        new($"{what} (line {(xml as IXmlLineInfo)?.LineNumber ?? 0})");

    private static FormatException Missing(XmlReader xml, string attr) => Error(xml, $"could not find attribute: {attr} of <{xml.Name}>");

    private static ulong U64(XmlReader xml, string attr)
    {
        string s = xml.GetAttribute(attr) ?? throw Missing(xml, attr);
        return ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out ulong v)
            ? v : throw Error(xml, $"attribute {attr}=\"{s}\" of <{xml.Name}> is not an unsigned number");
    }

    private static uint U32(XmlReader xml, string attr)
    {
        ulong v = U64(xml, attr);
        return v <= uint.MaxValue ? (uint)v : throw Error(xml, $"attribute {attr} of <{xml.Name}> is too large ({v})");
    }
}
