using System.Globalization;
using System.Text;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Tests.Support;

/// <summary>A map value: entries in order (MessagePack maps keep their order on the wire).</summary>
public sealed record MsgMap(IReadOnlyList<KeyValuePair<object?, object?>> Entries);

/// <summary>An ext value.</summary>
public sealed record MsgExt(sbyte Type, byte[] Data);

/// <summary>
/// A plain object model of MessagePack values for tests — null, bool, long, ulong (above
/// long.MaxValue), double, string, byte[], object?[] (array), <see cref="MsgMap"/>, <see cref="MsgExt"/> —
/// with a canonical text that <see cref="PythonCanon"/> prints identically from python3-msgpack's
/// view of the same bytes.
/// </summary>
public static class MsgValue
{
    /// <summary>Python source of canon(x), the same text as <see cref="Canon"/>.</summary>
    public const string PythonCanon = """
        import sys, struct, msgpack
        def canon(x):
            if x is None: return 'N'
            if x is True: return 'T'
            if x is False: return 'F'
            if isinstance(x, int): return 'i:%d' % x
            if isinstance(x, float): return 'f:' + struct.pack('>d', x).hex()
            if isinstance(x, str): return 's:' + x.encode('utf-8').hex()
            if isinstance(x, (bytes, bytearray)): return 'b:' + bytes(x).hex()
            if isinstance(x, msgpack.ExtType): return 'x:%d:%s' % (x.code, x.data.hex())  # a namedtuple: before tuple
            if isinstance(x, (list, tuple)): return '[' + ','.join(canon(e) for e in x) + ']'
            if isinstance(x, dict): return '{' + ','.join(canon(k) + '=' + canon(v) for k, v in x.items()) + '}'
            raise TypeError(type(x))
        def unpack(data):
            return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)

        """;

    public static string Canon(object? v) => v switch
    {
        null => "N",
        true => "T",
        false => "F",
        long l => "i:" + l.ToString(CultureInfo.InvariantCulture),
        ulong u => "i:" + u.ToString(CultureInfo.InvariantCulture),
        int i => "i:" + i.ToString(CultureInfo.InvariantCulture),
        double d => "f:" + BitConverter.DoubleToInt64Bits(d).ToString("x16"),
        string s => "s:" + Convert.ToHexStringLower(Encoding.UTF8.GetBytes(s)),
        byte[] b => "b:" + Convert.ToHexStringLower(b),
        object?[] a => "[" + string.Join(",", a.Select(Canon)) + "]",
        MsgMap m => "{" + string.Join(",", m.Entries.Select(e => Canon(e.Key) + "=" + Canon(e.Value))) + "}",
        MsgExt x => $"x:{x.Type}:{Convert.ToHexStringLower(x.Data)}",
        _ => throw new ArgumentException($"not a MessagePack value: {v.GetType()}"),
    };

    public static void Write(ref MessagePackWriter w, object? v)
    {
        switch (v)
        {
            case null: w.WriteNil(); break;
            case bool b: w.WriteBoolean(b); break;
            case long l: w.WriteInt64(l); break;
            case ulong u: w.WriteUInt64(u); break;
            case int i: w.WriteInt64(i); break;
            case double d: w.WriteDouble(d); break;
            case string s: w.WriteString(s); break;
            case byte[] bytes: w.WriteBinary(bytes); break;
            case object?[] a:
                w.WriteArrayHeader(a.Length);
                foreach (var e in a)
                    Write(ref w, e);
                break;
            case MsgMap m:
                w.WriteMapHeader(m.Entries.Count);
                foreach (var e in m.Entries)
                {
                    Write(ref w, e.Key);
                    Write(ref w, e.Value);
                }
                break;
            default: throw new ArgumentException($"cannot write {v.GetType()}");
        }
    }

    public static byte[] Encode(object? v)
    {
        using var buffer = new PooledBufferWriter();
        var w = new MessagePackWriter(buffer);
        Write(ref w, v);
        return buffer.WrittenSpan.ToArray();
    }

    public static object? Read(ref MessagePackReader r)
    {
        switch (r.PeekType())
        {
            case MessagePackType.Nil: r.ReadNil(); return null;
            case MessagePackType.Boolean: return r.ReadBoolean();
            case MessagePackType.Integer:
                var probe = r; // a copy: try the signed range first
                try
                {
                    probe.ReadInt64();
                    return r.ReadInt64();
                }
                catch (WireFormatException)
                {
                    return r.ReadUInt64();
                }
            case MessagePackType.Float: return r.ReadDouble();
            case MessagePackType.String: return r.ReadString();
            case MessagePackType.Binary: return r.ReadBinary().ToArray();
            case MessagePackType.Extension:
                var data = r.ReadExtension(out sbyte type);
                return new MsgExt(type, data.ToArray());
            case MessagePackType.Array:
                var a = new object?[r.ReadArrayHeader()];
                for (int i = 0; i < a.Length; i++)
                    a[i] = Read(ref r);
                return a;
            case MessagePackType.Map:
                int n = r.ReadMapHeader();
                var entries = new List<KeyValuePair<object?, object?>>(n);
                for (int i = 0; i < n; i++)
                {
                    var k = Read(ref r);
                    entries.Add(new(k, Read(ref r)));
                }
                return new MsgMap(entries);
            default:
                throw new InvalidOperationException("unreachable: PeekType refuses 0xc1");
        }
    }

    /// <summary>Decodes exactly one value that fills <paramref name="bytes"/>.</summary>
    public static object? Decode(ReadOnlySpan<byte> bytes, MessagePackLimits? limits = null)
    {
        var r = new MessagePackReader(bytes, limits ?? new MessagePackLimits { MaxStringBytes = 1 << 20 });
        var v = Read(ref r);
        Assert.True(r.End, $"{r.Remaining} bytes left after the value");
        return v;
    }
}
