using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Tests;

/// <summary>
/// Exact bytes of every format at its boundaries, written out from the MessagePack specification,
/// and each decoded back by our reader to the same value.
/// </summary>
public class MessagePackEncodingTests
{
    public static TheoryData<string, string> Integers => new()
    {
        { "0", "00" }, { "1", "01" }, { "127", "7f" },
        { "128", "cc80" }, { "255", "ccff" },
        { "256", "cd0100" }, { "65535", "cdffff" },
        { "65536", "ce00010000" }, { "4294967295", "ceffffffff" },
        { "4294967296", "cf0000000100000000" }, { "9223372036854775807", "cf7fffffffffffffff" },
        { "18446744073709551615", "cfffffffffffffffff" },
        { "-1", "ff" }, { "-32", "e0" },
        { "-33", "d0df" }, { "-128", "d080" },
        { "-129", "d1ff7f" }, { "-32768", "d18000" },
        { "-32769", "d2ffff7fff" }, { "-2147483648", "d280000000" },
        { "-2147483649", "d3ffffffff7fffffff" }, { "-9223372036854775808", "d38000000000000000" },
    };

    [Theory]
    [MemberData(nameof(Integers))]
    public void IntegersTakeTheSmallestEncoding(string value, string hex)
    {
        object boxed = value.StartsWith('-') || long.TryParse(value, out _) ? (object)long.Parse(value) : ulong.Parse(value);
        var bytes = MsgValue.Encode(boxed);
        Assert.Equal(hex, Convert.ToHexStringLower(bytes));
        Assert.Equal(MsgValue.Canon(boxed), MsgValue.Canon(MsgValue.Decode(bytes)));
    }

    [Fact]
    public void IntegerOverloadsAgree()
    {
        foreach (long v in new long[] { 0, 127, 128, -32, -33, int.MaxValue, int.MinValue, long.MaxValue, long.MinValue })
        {
            var viaSigned = MsgValue.Encode(v);
            if (v >= 0)
                Assert.Equal(viaSigned, MsgValue.Encode((ulong)v));
            var r = new MessagePackReader(viaSigned);
            Assert.Equal(v, r.ReadInt64());
        }
        var r32 = new MessagePackReader(Convert.FromHexString("ceffffffff"));
        Assert.Equal(uint.MaxValue, r32.ReadUInt32());
        var ri = new MessagePackReader(Convert.FromHexString("d280000000"));
        Assert.Equal(int.MinValue, ri.ReadInt32());
    }

    [Fact]
    public void NilBooleansAndFloat64()
    {
        Assert.Equal("c0", Hex(null));
        Assert.Equal("c2", Hex(false));
        Assert.Equal("c3", Hex(true));
        Assert.Equal("cb3ff8000000000000", Hex(1.5));
        Assert.Equal("cb8000000000000000", Hex(-0.0));
        Assert.Equal("cb7ff0000000000000", Hex(double.PositiveInfinity));
        foreach (var v in new object?[] { null, false, true, 1.5, -0.0, double.MaxValue, double.Epsilon, double.NegativeInfinity })
            Assert.Equal(MsgValue.Canon(v), MsgValue.Canon(MsgValue.Decode(MsgValue.Encode(v))));
        var f32 = new MessagePackReader(Convert.FromHexString("ca3fc00000"));
        Assert.Equal(1.5, f32.ReadDouble());
    }

    public static TheoryData<int, string> StringLengths => new()
    {
        { 0, "a0" }, { 1, "a1" }, { 31, "bf" }, { 32, "d920" }, { 255, "d9ff" },
        { 256, "da0100" }, { 65535, "daffff" }, { 65536, "db00010000" }, { 100000, "db000186a0" },
    };

    [Theory]
    [MemberData(nameof(StringLengths))]
    public void StringsTakeTheSmallestHeader(int length, string header)
    {
        var s = new string('x', length);
        var bytes = MsgValue.Encode(s);
        Assert.Equal(header, Convert.ToHexStringLower(bytes.AsSpan(0, header.Length / 2)));
        Assert.Equal(header.Length / 2 + length, bytes.Length);
        Assert.Equal(s, MsgValue.Decode(bytes));
    }

    [Fact]
    public void StringsAreUtf8AndLengthsCountBytes()
    {
        Assert.Equal("a2c3a9", Hex("é"));
        Assert.Equal("a4f09f92be", Hex("💾"));
        // 16 two-byte characters: 32 bytes, so str8 although only 16 chars.
        var s = new string('é', 16);
        Assert.Equal("d920", Hex(s)[..4]);
        Assert.Equal(s, MsgValue.Decode(MsgValue.Encode(s)));
    }

    [Fact]
    public void LoneSurrogateIsRefusedAndWritesNothing()
    {
        using var buffer = new PooledBufferWriter();
        var e = Assert.Throws<ArgumentException>(() =>
        {
            var w = new MessagePackWriter(buffer);
            w.WriteString("a\ud800b");
        });
        Assert.Contains("surrogate", e.Message);
        Assert.Equal(0, buffer.WrittenCount);
    }

    public static TheoryData<int, string> BinaryLengths => new()
    {
        { 0, "c400" }, { 1, "c401" }, { 255, "c4ff" }, { 256, "c50100" },
        { 65535, "c5ffff" }, { 65536, "c600010000" }, { 1 << 20, "c600100000" },
    };

    [Theory]
    [MemberData(nameof(BinaryLengths))]
    public void BinaryTakesTheSmallestHeader(int length, string header)
    {
        var data = new byte[length];
        new Random(length).NextBytes(data);
        var bytes = MsgValue.Encode(data);
        Assert.Equal(header, Convert.ToHexStringLower(bytes.AsSpan(0, header.Length / 2)));
        Assert.Equal(data, (byte[])MsgValue.Decode(bytes)!);
    }

    public static TheoryData<int, string, string> CollectionCounts => new()
    {
        { 0, "90", "80" }, { 1, "91", "81" }, { 15, "9f", "8f" }, { 16, "dc0010", "de0010" },
        { 65535, "dcffff", "deffff" }, { 65536, "dd00010000", "df00010000" },
    };

    [Theory]
    [MemberData(nameof(CollectionCounts))]
    public void CollectionsTakeTheSmallestHeader(int count, string arrayHeader, string mapHeader)
    {
        var array = Enumerable.Range(0, count).Select(i => (object?)(long)(i % 100)).ToArray();
        var arrayBytes = MsgValue.Encode(array);
        Assert.Equal(arrayHeader, Convert.ToHexStringLower(arrayBytes.AsSpan(0, arrayHeader.Length / 2)));
        Assert.Equal(MsgValue.Canon(array), MsgValue.Canon(MsgValue.Decode(arrayBytes)));

        var map = new MsgMap(Enumerable.Range(0, count).Select(i => new KeyValuePair<object?, object?>((long)i, i % 2 == 0)).ToList());
        var mapBytes = MsgValue.Encode(map);
        Assert.Equal(mapHeader, Convert.ToHexStringLower(mapBytes.AsSpan(0, mapHeader.Length / 2)));
        Assert.Equal(MsgValue.Canon(map), MsgValue.Canon(MsgValue.Decode(mapBytes)));
    }

    [Fact]
    public void NestedValueRoundTrips()
    {
        var value = new MsgMap(
        [
            new("name", "volume-1"),
            new("sizes", new object?[] { 0L, -1L, long.MinValue, ulong.MaxValue, 1.25, null, true }),
            new(7L, new MsgMap([new("blob", new byte[] { 1, 2, 3 }), new("empty", Array.Empty<object?>())])),
        ]);
        var bytes = MsgValue.Encode(value);
        Assert.Equal(MsgValue.Canon(value), MsgValue.Canon(MsgValue.Decode(bytes)));
    }

    [Fact]
    public void WriterAllocatesNothingOnceItsBufferIsWarm()
    {
        using var buffer = new PooledBufferWriter(1 << 20);
        var payload = new byte[4096];
        long allocated = SteadyAllocation.Measure(() =>
        {
            buffer.Reset();
            WriteMany(buffer, payload);
        });
        Assert.Equal(0, allocated);
        Assert.True(buffer.WrittenCount > 100 * 4096);

        static void WriteMany(PooledBufferWriter buffer, byte[] payload)
        {
            var w = new MessagePackWriter(buffer);
            for (int i = 0; i < 128; i++)
            {
                w.WriteMapHeader(3);
                w.WriteStringUtf8("off"u8);
                w.WriteInt64(i * 65536L);
                w.WriteStringUtf8("name"u8);
                w.WriteString("volume-é");
                w.WriteStringUtf8("data"u8);
                w.WriteBinary(payload);
                w.WriteUInt64(ulong.MaxValue - (ulong)i);
                w.WriteDouble(i);
                w.WriteNil();
            }
        }
    }

    private static string Hex(object? v) => Convert.ToHexStringLower(MsgValue.Encode(v));
}
