using System.Globalization;
using System.Xml;
using BackupAppliance.Thin.Dump;

namespace BackupAppliance.Thin.Restore;

/// <summary>
/// Parses thin_dump XML into <see cref="IMetadataVisitor"/> calls, with thin_restore's rules: required
/// attributes, <c>flags</c> default 0, <c>version</c> default 1, any other element is an error.
/// </summary>
public static class ThinXmlReader
{
    public static void Read(TextReader input, IMetadataVisitor visitor)
    {
        var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, IgnoreComments = true, IgnoreWhitespace = true };
        using var xml = XmlReader.Create(input, settings);
        bool inSuperblock = false, inDevice = false;
        try
        {
            while (xml.Read())
            {
                switch (xml.NodeType)
                {
                    case XmlNodeType.Element:
                        bool empty = xml.IsEmptyElement;
                        switch (xml.Name)
                        {
                            case "superblock":
                                if (inSuperblock)
                                    throw Error(xml, "nested <superblock>");
                                visitor.BeginSuperblock(new SuperblockInfo(
                                    xml.GetAttribute("uuid") ?? throw Missing(xml, "uuid"),
                                    U32(xml, "time"), U64(xml, "transaction"),
                                    OptU32(xml, "flags") ?? 0, OptU32(xml, "version") ?? 1,
                                    U32(xml, "data_block_size"), U64(xml, "nr_data_blocks"),
                                    OptU64(xml, "metadata_snap")));
                                inSuperblock = true;
                                if (empty)
                                {
                                    visitor.EndSuperblock();
                                    inSuperblock = false;
                                }
                                break;
                            case "device":
                                if (!inSuperblock || inDevice)
                                    throw Error(xml, "<device> outside a <superblock>");
                                visitor.BeginDevice(new DeviceInfo(U64(xml, "dev_id"), U64(xml, "mapped_blocks"),
                                    U64(xml, "transaction"), U32(xml, "creation_time"), U32(xml, "snap_time")));
                                inDevice = true;
                                if (empty)
                                {
                                    visitor.EndDevice();
                                    inDevice = false;
                                }
                                break;
                            case "range_mapping":
                                if (!inDevice)
                                    throw Error(xml, "<range_mapping> outside a <device>");
                                ulong length = U64(xml, "length");
                                if (length == 0)
                                    throw Error(xml, "range_mapping with length 0");
                                visitor.Mapping(U64(xml, "origin_begin"), U64(xml, "data_begin"), length, U32(xml, "time"));
                                break;
                            case "single_mapping":
                                if (!inDevice)
                                    throw Error(xml, "<single_mapping> outside a <device>");
                                visitor.Mapping(U64(xml, "origin_block"), U64(xml, "data_block"), 1, U32(xml, "time"));
                                break;
                            default:
                                throw Error(xml, $"unknown tag type <{xml.Name}>");
                        }
                        break;
                    case XmlNodeType.EndElement:
                        if (xml.Name == "device")
                        {
                            visitor.EndDevice();
                            inDevice = false;
                        }
                        else if (xml.Name == "superblock")
                        {
                            visitor.EndSuperblock();
                            inSuperblock = false;
                        }
                        break;
                }
            }
        }
        catch (XmlException e)
        {
            throw new FormatException($"XML is malformed: {e.Message}", e);
        }
    }

    private static FormatException Error(XmlReader xml, string what) =>
        new($"{what} (line {(xml as IXmlLineInfo)?.LineNumber ?? 0})");

    private static FormatException Missing(XmlReader xml, string attr) => Error(xml, $"<{xml.Name}> lacks the attribute '{attr}'");

    private static ulong U64(XmlReader xml, string attr) => OptU64(xml, attr) ?? throw Missing(xml, attr);
    private static uint U32(XmlReader xml, string attr) => OptU32(xml, attr) ?? throw Missing(xml, attr);

    private static ulong? OptU64(XmlReader xml, string attr)
    {
        string? s = xml.GetAttribute(attr);
        if (s is null)
            return null;
        return ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out ulong v)
            ? v : throw Error(xml, $"attribute {attr}=\"{s}\" of <{xml.Name}> is not an unsigned number");
    }

    private static uint? OptU32(XmlReader xml, string attr)
    {
        ulong? v = OptU64(xml, attr);
        if (v is null)
            return null;
        return v <= uint.MaxValue ? (uint)v : throw Error(xml, $"attribute {attr} of <{xml.Name}> is too large ({v})");
    }
}
