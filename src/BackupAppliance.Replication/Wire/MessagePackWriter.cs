using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace BackupAppliance.Replication.Wire;

/// <summary>
/// Writes MessagePack values into an <see cref="IBufferWriter{T}"/>, each in its smallest encoding
/// (integers, str, bin, array and map headers). Allocates nothing: every value is written straight
/// into the span the buffer writer hands out.
/// </summary>
public ref struct MessagePackWriter
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly IBufferWriter<byte> _output;

    public MessagePackWriter(IBufferWriter<byte> output) => _output = output;

    public void WriteNil() => WriteCode(MessagePackCode.Nil);

    public void WriteBoolean(bool value) => WriteCode(value ? MessagePackCode.True : MessagePackCode.False);

    public void WriteUInt64(ulong value)
    {
        if (value <= MessagePackCode.MaxPositiveFixInt)
            WriteCode((byte)value);
        else if (value <= byte.MaxValue)
            Write8(MessagePackCode.UInt8, (byte)value);
        else if (value <= ushort.MaxValue)
            Write16(MessagePackCode.UInt16, (ushort)value);
        else if (value <= uint.MaxValue)
            Write32(MessagePackCode.UInt32, (uint)value);
        else
            Write64(MessagePackCode.UInt64, value);
    }

    /// <summary>Non-negative values take the unsigned encodings, as the specification's smallest form.</summary>
    public void WriteInt64(long value)
    {
        if (value >= 0)
            WriteUInt64((ulong)value);
        else if (value >= MessagePackCode.MinNegativeFixIntValue)
            WriteCode((byte)(sbyte)value);
        else if (value >= sbyte.MinValue)
            Write8(MessagePackCode.Int8, (byte)(sbyte)value);
        else if (value >= short.MinValue)
            Write16(MessagePackCode.Int16, (ushort)(short)value);
        else if (value >= int.MinValue)
            Write32(MessagePackCode.Int32, (uint)(int)value);
        else
            Write64(MessagePackCode.Int64, (ulong)value);
    }

    /// <summary>
    /// Always the 5-byte uint32 form, whatever the value: for fields that must sit at a fixed place
    /// and width (the frame's crc32c trailer).
    /// </summary>
    public void WriteUInt32Full(uint value) => Write32(MessagePackCode.UInt32, value);

    /// <summary>float64 (the specification's 0xcb), big-endian IEEE 754.</summary>
    public void WriteDouble(double value) => Write64(MessagePackCode.Float64, (ulong)BitConverter.DoubleToInt64Bits(value));

    /// <summary>A str of <paramref name="value"/> in UTF-8; a lone surrogate is an <see cref="ArgumentException"/>.</summary>
    public void WriteString(ReadOnlySpan<char> value)
    {
        int length;
        try
        {
            length = StrictUtf8.GetByteCount(value);
        }
        catch (EncoderFallbackException e)
        {
            throw new ArgumentException($"string is not valid UTF-16 (it has a lone surrogate): {e.Message}", nameof(value), e);
        }
        WriteStringHeader(length);
        var s = _output.GetSpan(length);
        StrictUtf8.GetBytes(value, s);
        _output.Advance(length);
    }

    /// <summary>A str whose bytes are already UTF-8 (keys written as u8 literals).</summary>
    public void WriteStringUtf8(ReadOnlySpan<byte> utf8)
    {
        WriteStringHeader(utf8.Length);
        WriteRaw(utf8);
    }

    public void WriteStringHeader(int byteCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteCount);
        if (byteCount <= MessagePackCode.MaxFixStrLength)
            WriteCode((byte)(MessagePackCode.MinFixStr | byteCount));
        else if (byteCount <= byte.MaxValue)
            WriteLength8(MessagePackCode.Str8, byteCount);
        else
            WriteLength16Or32(MessagePackCode.Str16, MessagePackCode.Str32, byteCount);
    }

    public void WriteBinary(ReadOnlySpan<byte> value)
    {
        WriteBinaryHeader(value.Length);
        WriteRaw(value);
    }

    public void WriteBinaryHeader(int byteCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteCount);
        if (byteCount <= byte.MaxValue)
            WriteLength8(MessagePackCode.Bin8, byteCount);
        else
            WriteLength16Or32(MessagePackCode.Bin16, MessagePackCode.Bin32, byteCount);
    }

    public void WriteArrayHeader(int count) =>
        WriteCollectionHeader(MessagePackCode.MinFixArray, MessagePackCode.Array16, MessagePackCode.Array32, count);

    public void WriteMapHeader(int count) =>
        WriteCollectionHeader(MessagePackCode.MinFixMap, MessagePackCode.Map16, MessagePackCode.Map32, count);

    /// <summary>Bytes copied as they are: the body of a str or bin whose header was written, or a pre-encoded value.</summary>
    public void WriteRaw(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty)
            return;
        bytes.CopyTo(_output.GetSpan(bytes.Length));
        _output.Advance(bytes.Length);
    }

    private void WriteCollectionHeader(byte fix, byte code16, byte code32, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (count <= MessagePackCode.MaxFixCollectionCount)
            WriteCode((byte)(fix | count));
        else
            WriteLength16Or32(code16, code32, count);
    }

    private void WriteCode(byte code)
    {
        _output.GetSpan(1)[0] = code;
        _output.Advance(1);
    }

    private void WriteLength8(byte code, int length) => Write8(code, (byte)length);

    private void WriteLength16Or32(byte code16, byte code32, int length)
    {
        if (length <= ushort.MaxValue)
            Write16(code16, (ushort)length);
        else
            Write32(code32, (uint)length);
    }

    // A code byte and a big-endian number after it.
    private void Write8(byte code, byte value)
    {
        var s = _output.GetSpan(2);
        s[0] = code;
        s[1] = value;
        _output.Advance(2);
    }

    private void Write16(byte code, ushort value)
    {
        var s = _output.GetSpan(3);
        s[0] = code;
        BinaryPrimitives.WriteUInt16BigEndian(s[1..], value);
        _output.Advance(3);
    }

    private void Write32(byte code, uint value)
    {
        var s = _output.GetSpan(5);
        s[0] = code;
        BinaryPrimitives.WriteUInt32BigEndian(s[1..], value);
        _output.Advance(5);
    }

    private void Write64(byte code, ulong value)
    {
        var s = _output.GetSpan(9);
        s[0] = code;
        BinaryPrimitives.WriteUInt64BigEndian(s[1..], value);
        _output.Advance(9);
    }
}
