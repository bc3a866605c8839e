using System.Buffers.Binary;
using System.Text;
using System.Text.Unicode;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Reads MessagePack values from a span, strictly: any value that is malformed, truncated, of
/// another type than asked, out of range or beyond <see cref="MessagePackLimits"/> is a
/// <see cref="WireFormatException"/> naming what and the offset where the value starts, and
/// leaves the reader where it was. Every valid encoding of a value is accepted, not only the
/// smallest. str and bin come back as slices of the input (no copy).
/// </summary>
public ref struct MessagePackReader
{
    private readonly ReadOnlySpan<byte> _buffer;
    private readonly MessagePackLimits _limits;
    private int _position;

    public MessagePackReader(ReadOnlySpan<byte> buffer, MessagePackLimits? limits = null)
    {
        _buffer = buffer;
        _limits = limits ?? MessagePackLimits.Default;
    }

    /// <summary>Bytes read so far: the offset of the next value.</summary>
    public readonly int Consumed => _position;

    public readonly int Remaining => _buffer.Length - _position;

    public readonly bool End => _position >= _buffer.Length;

    public readonly MessagePackLimits Limits => _limits;

    /// <summary>The type of the next value, without reading it.</summary>
    public readonly MessagePackType PeekType()
    {
        if (End)
            throw new WireFormatException(WireErrorCode.Truncated, "expected a value, found the end of the input", _position);
        var t = MessagePackCode.TypeOf(_buffer[_position]);
        if (t == MessagePackType.Invalid)
            throw new WireFormatException(WireErrorCode.Malformed, "found the never-used byte 0xc1", _position);
        return t;
    }

    /// <summary>Reads a nil if one is next; otherwise reads nothing and returns false.</summary>
    public bool TryReadNil()
    {
        if (!End && _buffer[_position] == MessagePackCode.Nil)
        {
            _position++;
            return true;
        }
        return false;
    }

    public void ReadNil()
    {
        if (Code("nil") != MessagePackCode.Nil)
            throw Mismatch("nil");
        _position++;
    }

    public bool ReadBoolean()
    {
        bool value = Code("bool") switch
        {
            MessagePackCode.True => true,
            MessagePackCode.False => false,
            _ => throw Mismatch("bool"),
        };
        _position++;
        return value;
    }

    public ulong ReadUInt64() => (ulong)ReadInteger("uint64", 0, ulong.MaxValue);

    public uint ReadUInt32() => (uint)ReadInteger("uint32", 0, uint.MaxValue);

    public long ReadInt64() => (long)ReadInteger("int64", long.MinValue, long.MaxValue);

    public int ReadInt32() => (int)ReadInteger("int32", int.MinValue, int.MaxValue);

    /// <summary>float64, or float32 widened.</summary>
    public double ReadDouble()
    {
        int start = _position;
        switch (Code("float"))
        {
            case MessagePackCode.Float64:
                var d = BinaryPrimitives.ReadDoubleBigEndian(Take(1, 8, "float64"));
                _position = start + 9;
                return d;
            case MessagePackCode.Float32:
                var f = BinaryPrimitives.ReadSingleBigEndian(Take(1, 4, "float32"));
                _position = start + 5;
                return f;
            default:
                throw Mismatch("float");
        }
    }

    /// <summary>A str's bytes as they are (not checked to be UTF-8); a slice of the input.</summary>
    public ReadOnlySpan<byte> ReadStringUtf8()
    {
        int start = _position;
        byte code = Code("str");
        int header;
        long length;
        if (code >= MessagePackCode.MinFixStr && code <= MessagePackCode.MaxFixStr)
            (header, length) = (1, code & 0x1f);
        else if (code is MessagePackCode.Str8 or MessagePackCode.Str16 or MessagePackCode.Str32)
            (header, length) = ReadLength(code - MessagePackCode.Str8, "str");
        else
            throw Mismatch("str");
        if (length > _limits.MaxStringBytes)
            throw new WireFormatException(WireErrorCode.Oversized, $"str of {length} bytes is longer than the limit of {_limits.MaxStringBytes}", start);
        var s = Take(header, (int)length, "str");
        _position = start + header + s.Length;
        return s;
    }

    /// <summary>A str decoded from UTF-8; invalid UTF-8 is refused.</summary>
    public string ReadString()
    {
        int start = _position;
        var bytes = ReadStringUtf8();
        if (!Utf8.IsValid(bytes))
        {
            _position = start;
            throw new WireFormatException(WireErrorCode.Malformed, "str is not valid UTF-8", start);
        }
        return Encoding.UTF8.GetString(bytes);
    }

    /// <summary>A bin's bytes; a slice of the input.</summary>
    public ReadOnlySpan<byte> ReadBinary()
    {
        int start = _position;
        byte code = Code("bin");
        if (code is not (MessagePackCode.Bin8 or MessagePackCode.Bin16 or MessagePackCode.Bin32))
            throw Mismatch("bin");
        var (header, length) = ReadLength(code - MessagePackCode.Bin8, "bin");
        if (length > _limits.MaxBinaryBytes)
            throw new WireFormatException(WireErrorCode.Oversized, $"bin of {length} bytes is longer than the limit of {_limits.MaxBinaryBytes}", start);
        var s = Take(header, (int)length, "bin");
        _position = start + header + s.Length;
        return s;
    }

    public int ReadArrayHeader() =>
        ReadCollectionHeader(MessagePackCode.MinFixArray, MessagePackCode.MaxFixArray, MessagePackCode.Array16, MessagePackCode.Array32, 1, "array");

    public int ReadMapHeader() =>
        ReadCollectionHeader(MessagePackCode.MinFixMap, MessagePackCode.MaxFixMap, MessagePackCode.Map16, MessagePackCode.Map32, 2, "map");

    /// <summary>Reads past the next value whatever it is (nested arrays and maps up to <see cref="MessagePackLimits.MaxDepth"/> deep).</summary>
    public void Skip()
    {
        int start = _position;
        try
        {
            SkipValue(0);
        }
        catch (WireFormatException)
        {
            _position = start;
            throw;
        }
    }

    private void SkipValue(int depth)
    {
        int start = _position;
        byte code = Code("value");
        switch (MessagePackCode.TypeOf(code))
        {
            case MessagePackType.Invalid:
                throw new WireFormatException(WireErrorCode.Malformed, "found the never-used byte 0xc1", start);
            case MessagePackType.Nil:
            case MessagePackType.Boolean:
                _position++;
                return;
            case MessagePackType.Integer:
                ReadInteger("integer", Int128.MinValue, Int128.MaxValue);
                return;
            case MessagePackType.Float:
                ReadDouble();
                return;
            case MessagePackType.String:
                ReadStringUtf8();
                return;
            case MessagePackType.Binary:
                ReadBinary();
                return;
            case MessagePackType.Extension:
                ReadExtension(out _);
                return;
            case MessagePackType.Array:
            case MessagePackType.Map:
                if (depth >= _limits.MaxDepth)
                    throw new WireFormatException(WireErrorCode.Oversized, $"nesting deeper than the limit of {_limits.MaxDepth}", start);
                long values = MessagePackCode.TypeOf(code) == MessagePackType.Array ? ReadArrayHeader() : 2L * ReadMapHeader();
                for (long i = 0; i < values; i++)
                    SkipValue(depth + 1);
                return;
        }
    }

    /// <summary>An ext value's data (a slice of the input) and, in <paramref name="type"/>, its application type.</summary>
    public ReadOnlySpan<byte> ReadExtension(out sbyte type)
    {
        int start = _position;
        byte code = Code("ext");
        if (MessagePackCode.TypeOf(code) != MessagePackType.Extension)
            throw Mismatch("ext");
        int header;
        long length;
        switch (code)
        {
            case MessagePackCode.FixExt1: (header, length) = (2, 1); break;
            case MessagePackCode.FixExt2: (header, length) = (2, 2); break;
            case MessagePackCode.FixExt4: (header, length) = (2, 4); break;
            case MessagePackCode.FixExt8: (header, length) = (2, 8); break;
            case MessagePackCode.FixExt16: (header, length) = (2, 16); break;
            default:
                (header, length) = ReadLength(code - MessagePackCode.Ext8, "ext");
                header++; // the type byte after the length
                break;
        }
        if (length > _limits.MaxBinaryBytes)
            throw new WireFormatException(WireErrorCode.Oversized, $"ext of {length} bytes is longer than the limit of {_limits.MaxBinaryBytes}", start);
        type = (sbyte)Take(header - 1, 1, "ext type")[0];
        var s = Take(header, (int)length, "ext");
        _position = start + header + s.Length;
        return s;
    }

    private Int128 ReadInteger(string expected, Int128 min, Int128 max)
    {
        int start = _position;
        byte code = Code(expected);
        Int128 value;
        int size;
        switch (code)
        {
            case <= MessagePackCode.MaxPositiveFixInt: value = code; size = 1; break;
            case >= MessagePackCode.MinNegativeFixInt: value = (sbyte)code; size = 1; break;
            case MessagePackCode.UInt8: value = Take(1, 1, "uint8")[0]; size = 2; break;
            case MessagePackCode.UInt16: value = BinaryPrimitives.ReadUInt16BigEndian(Take(1, 2, "uint16")); size = 3; break;
            case MessagePackCode.UInt32: value = BinaryPrimitives.ReadUInt32BigEndian(Take(1, 4, "uint32")); size = 5; break;
            case MessagePackCode.UInt64: value = BinaryPrimitives.ReadUInt64BigEndian(Take(1, 8, "uint64")); size = 9; break;
            case MessagePackCode.Int8: value = (sbyte)Take(1, 1, "int8")[0]; size = 2; break;
            case MessagePackCode.Int16: value = BinaryPrimitives.ReadInt16BigEndian(Take(1, 2, "int16")); size = 3; break;
            case MessagePackCode.Int32: value = BinaryPrimitives.ReadInt32BigEndian(Take(1, 4, "int32")); size = 5; break;
            case MessagePackCode.Int64: value = BinaryPrimitives.ReadInt64BigEndian(Take(1, 8, "int64")); size = 9; break;
            default: throw Mismatch(expected);
        }
        if (value < min || value > max)
            throw new WireFormatException(WireErrorCode.Malformed, $"integer {value} is out of range for {expected}", start);
        _position = start + size;
        return value;
    }

    private int ReadCollectionHeader(byte fixMin, byte fixMax, byte code16, byte code32, int minBytesPerElement, string name)
    {
        int start = _position;
        byte code = Code(name);
        int header;
        long count;
        if (code >= fixMin && code <= fixMax)
            (header, count) = (1, code & 0x0f);
        else if (code == code16)
            (header, count) = (3, BinaryPrimitives.ReadUInt16BigEndian(Take(1, 2, name + "16 header")));
        else if (code == code32)
            (header, count) = (5, BinaryPrimitives.ReadUInt32BigEndian(Take(1, 4, name + "32 header")));
        else
            throw Mismatch(name);
        if (count > _limits.MaxCollectionCount)
            throw new WireFormatException(WireErrorCode.Oversized, $"{name} of {count} elements is larger than the limit of {_limits.MaxCollectionCount}", start);
        long left = _buffer.Length - (start + header);
        if (count * minBytesPerElement > left)
            throw new WireFormatException(WireErrorCode.Truncated, $"{name} of {count} elements cannot fit in the {left} bytes left", start);
        _position = start + header;
        return (int)count;
    }

    /// <summary>Reads the 8, 16 or 32-bit length after the code byte (<paramref name="width"/> 0, 1, 2).</summary>
    private readonly (int Header, long Length) ReadLength(int width, string name) => width switch
    {
        0 => (2, Take(1, 1, name + "8 length")[0]),
        1 => (3, BinaryPrimitives.ReadUInt16BigEndian(Take(1, 2, name + "16 length"))),
        _ => (5, BinaryPrimitives.ReadUInt32BigEndian(Take(1, 4, name + "32 length"))),
    };

    /// <summary>The first byte of the next value, or a Truncated error naming what was expected.</summary>
    private readonly byte Code(string expected)
    {
        if (End)
            throw new WireFormatException(WireErrorCode.Truncated, $"expected {expected}, found the end of the input", _position);
        return _buffer[_position];
    }

    /// <summary><paramref name="count"/> bytes that start <paramref name="skip"/> bytes after the current value's first byte.</summary>
    private readonly ReadOnlySpan<byte> Take(int skip, long count, string what)
    {
        long left = (long)_buffer.Length - _position - skip;
        if (count > left)
            throw new WireFormatException(WireErrorCode.Truncated, $"{what} needs {count} bytes, {Math.Max(left, 0)} left", _position);
        return _buffer.Slice(_position + skip, (int)count);
    }

    private readonly WireFormatException Mismatch(string expected) =>
        new(WireErrorCode.Malformed, $"expected {expected}, found {MessagePackCode.Describe(_buffer[_position])}", _position);
}
