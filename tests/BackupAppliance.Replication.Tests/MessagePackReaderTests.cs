using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Tests;

/// <summary>The reader's refusals: each names the problem and the offset, and leaves the reader where it was.</summary>
public class MessagePackReaderTests
{
    [Fact]
    public void AcceptsEncodingsLargerThanNeeded()
    {
        // Other encoders may use a wider form; the specification allows it.
        Assert.Equal(5L, Read("cc05", (ref MessagePackReader r) => r.ReadInt64()));
        Assert.Equal(0L, Read("d000", (ref MessagePackReader r) => r.ReadInt64()));
        Assert.Equal(1UL, Read("cf0000000000000001", (ref MessagePackReader r) => r.ReadUInt64()));
        Assert.Equal(-1, Read("d3ffffffffffffffff", (ref MessagePackReader r) => r.ReadInt32()));
        Assert.Equal("ab", Read("da00026162", (ref MessagePackReader r) => r.ReadString()));
        Assert.Equal(2, Read("dd00000002c0c0", (ref MessagePackReader r) =>
        {
            int n = r.ReadArrayHeader();
            r.ReadNil();
            r.ReadNil();
            return n;
        }));
    }

    public static TheoryData<string, string, string> OutOfRange => new()
    {
        { "ff", "uint64", "integer -1 is out of range for uint64" },
        { "cfffffffffffffffff", "int64", "integer 18446744073709551615 is out of range for int64" },
        { "cf0000000100000000", "uint32", "integer 4294967296 is out of range for uint32" },
        { "d3ffffffff7fffffff", "int32", "integer -2147483649 is out of range for int32" },
        { "ce80000000", "int32", "integer 2147483648 is out of range for int32" },
    };

    [Theory]
    [MemberData(nameof(OutOfRange))]
    public void IntegersOutOfRangeAreRefused(string hex, string type, string message)
    {
        var e = Fails(hex, (ref MessagePackReader r) =>
        {
            _ = type switch
            {
                "uint64" => (object)r.ReadUInt64(),
                "int64" => r.ReadInt64(),
                "uint32" => r.ReadUInt32(),
                _ => r.ReadInt32(),
            };
        });
        Assert.Equal(WireErrorCode.Malformed, e.Code);
        Assert.Contains(message, e.Message);
        Assert.Equal(0, e.Offset);
    }

    [Fact]
    public void WrongTypeNamesWhatWasFound()
    {
        var e = Fails("a3616263", (ref MessagePackReader r) => r.ReadUInt64());
        Assert.Equal("Malformed: expected uint64, found string (0xa3) (at offset 0)", e.Message);
        e = Fails("01", (ref MessagePackReader r) => r.ReadString());
        Assert.Contains("expected str, found integer (0x01)", e.Message);
        e = Fails("a0", (ref MessagePackReader r) => r.ReadBinary());
        Assert.Contains("expected bin, found string (0xa0)", e.Message);
        e = Fails("c4", (ref MessagePackReader r) => r.ReadMapHeader());
        Assert.Contains("expected map, found binary (0xc4)", e.Message);
        e = Fails("c0", (ref MessagePackReader r) => r.ReadBoolean());
        Assert.Contains("expected bool, found nil (0xc0)", e.Message);
        e = Fails("00", (ref MessagePackReader r) => r.ReadDouble());
        Assert.Contains("expected float", e.Message);
    }

    [Fact]
    public void NeverUsedByteIsRefusedEverywhere()
    {
        var e = Fails("c1", (ref MessagePackReader r) => r.PeekType());
        Assert.Contains("never-used byte 0xc1", e.Message);
        e = Fails("92c0c1", (ref MessagePackReader r) => r.Skip());
        Assert.Equal(WireErrorCode.Malformed, e.Code);
        Assert.Equal(2, e.Offset);
    }

    [Fact]
    public void ErrorsNameTheOffsetOfTheOffendingValue()
    {
        // [1, "ab", <str8 of 5 bytes but only 2 present>]
        var bytes = Convert.FromHexString("9301a26162d9056364");
        var r = new MessagePackReader(bytes);
        Assert.Equal(3, r.ReadArrayHeader());
        Assert.Equal(1, r.ReadInt32());
        Assert.Equal("ab", r.ReadString());
        int before = r.Consumed;
        try
        {
            r.ReadString();
            Assert.Fail("a truncated str was read");
        }
        catch (WireFormatException e)
        {
            Assert.Equal(WireErrorCode.Truncated, e.Code);
            Assert.Equal(5, e.Offset);
            Assert.Contains("str needs 5 bytes, 2 left", e.Message);
        }
        Assert.Equal(before, r.Consumed);
    }

    /// <summary>Every proper prefix of every kind of value is Truncated, never another error or a value.</summary>
    [Fact]
    public void EveryPrefixIsTruncated()
    {
        var values = new object?[]
        {
            200L, 60000L, 70000L, 1L << 40, -100L, -1000L, -100000L, long.MinValue, 1.5,
            new string('s', 40), new string('s', 300), new string('s', 70000),
            new byte[10], new byte[300], new byte[70000],
            Enumerable.Range(0, 20).Select(i => (object?)(long)i).ToArray(),
            new MsgMap(Enumerable.Range(0, 20).Select(i => new KeyValuePair<object?, object?>((long)i, "v")).ToList()),
            new object?[] { new object?[] { new MsgMap([new("k", new byte[] { 1 })]) } },
        };
        foreach (var v in values)
        {
            var bytes = MsgValue.Encode(v);
            foreach (int cut in Cuts(bytes.Length))
            {
                var r = new MessagePackReader(bytes.AsSpan(0, cut), new MessagePackLimits { MaxStringBytes = 1 << 20 });
                try
                {
                    r.Skip();
                    Assert.Fail($"{MsgValue.Canon(v)[..Math.Min(40, MsgValue.Canon(v).Length)]} cut at {cut} of {bytes.Length} was read whole");
                }
                catch (WireFormatException e)
                {
                    Assert.True(e.Code == WireErrorCode.Truncated, $"cut at {cut} of {bytes.Length}: {e.Message}");
                }
                Assert.Equal(0, r.Consumed);
            }
        }
    }

    [Fact]
    public void CollectionHeadersCannotPromiseMoreThanTheBytesLeft()
    {
        // array32 of 2 billion elements in 5 bytes: refused before anyone allocates for it.
        var e = Fails("dd7fffffff", (ref MessagePackReader r) => r.ReadArrayHeader(), new MessagePackLimits { MaxCollectionCount = int.MaxValue });
        Assert.Equal(WireErrorCode.Truncated, e.Code);
        Assert.Contains("cannot fit in the 0 bytes left", e.Message);
        // map of 3 entries needs at least 6 bytes.
        e = Fails("83c0c0c0c0c0", (ref MessagePackReader r) => r.ReadMapHeader());
        Assert.Equal(WireErrorCode.Truncated, e.Code);
        var ok = new MessagePackReader(Convert.FromHexString("83c0c0c0c0c0c0"));
        Assert.Equal(3, ok.ReadMapHeader());
    }

    [Fact]
    public void LimitsAreEnforced()
    {
        var limits = new MessagePackLimits { MaxStringBytes = 4, MaxBinaryBytes = 3, MaxCollectionCount = 2, MaxDepth = 3 };
        Assert.Equal("abcd", Read("a461626364", (ref MessagePackReader r) => r.ReadString(), limits));
        var e = Fails("a56162636465", (ref MessagePackReader r) => r.ReadString(), limits);
        Assert.Equal(WireErrorCode.Oversized, e.Code);
        Assert.Contains("str of 5 bytes is longer than the limit of 4", e.Message);
        e = Fails("c40400000000", (ref MessagePackReader r) => r.ReadBinary(), limits);
        Assert.Equal(WireErrorCode.Oversized, e.Code);
        e = Fails("93c0c0c0", (ref MessagePackReader r) => r.ReadArrayHeader(), limits);
        Assert.Contains("array of 3 elements is larger than the limit of 2", e.Message);
        e = Fails("d70100000000000000", (ref MessagePackReader r) => r.Skip(), limits); // fixext8 > 3 bytes
        Assert.Equal(WireErrorCode.Oversized, e.Code);

        // Depth: three nested arrays are fine, four are not, wherever the nesting is.
        Read("919191c0", (ref MessagePackReader r) => { r.Skip(); return 0; }, limits);
        e = Fails("91919191c0", (ref MessagePackReader r) => r.Skip(), limits);
        Assert.Equal(WireErrorCode.Oversized, e.Code);
        Assert.Contains("nesting deeper than the limit of 3", e.Message);
        Assert.Equal(3, e.Offset);
    }

    [Fact]
    public void DeepNestingCannotExhaustTheStack()
    {
        var bytes = new byte[100_001];
        bytes.AsSpan(0, 100_000).Fill(0x91);
        bytes[^1] = 0xc0;
        var e = Fails(Convert.ToHexString(bytes), (ref MessagePackReader r) => r.Skip());
        Assert.Equal(WireErrorCode.Oversized, e.Code);
    }

    [Fact]
    public void InvalidUtf8IsRefusedButItsBytesCanBeRead()
    {
        var e = Fails("a2c328", (ref MessagePackReader r) => r.ReadString());
        Assert.Equal(WireErrorCode.Malformed, e.Code);
        Assert.Contains("not valid UTF-8", e.Message);
        Assert.Equal("c328", Read("a2c328", (ref MessagePackReader r) => Convert.ToHexStringLower(r.ReadStringUtf8())));
    }

    [Fact]
    public void SkipPassesOverEveryFormatIncludingExt()
    {
        // [fixext1, fixext16, ext8, ext16, ext32, float32, nil] then 42
        var hex = "97" + "d40501" + "d805" + new string('0', 32) + "c70305616263" + "c8000205ffff" + "c9000000010541"
                  + "ca3f800000" + "c0" + "2a";
        var r = new MessagePackReader(Convert.FromHexString(hex));
        r.Skip();
        Assert.Equal(42, r.ReadInt32());
        Assert.True(r.End);

        var x = new MessagePackReader(Convert.FromHexString("c70305616263"));
        Assert.Equal("abc", System.Text.Encoding.ASCII.GetString(x.ReadExtension(out sbyte type)));
        Assert.Equal(5, type);
    }

    [Fact]
    public void TryReadNilOnlyConsumesNil()
    {
        var r = new MessagePackReader(Convert.FromHexString("c001"));
        Assert.True(r.TryReadNil());
        Assert.False(r.TryReadNil());
        Assert.Equal(1, r.ReadInt32());
        Assert.False(r.TryReadNil());
        var e = Fails("", (ref MessagePackReader r2) => r2.ReadNil());
        Assert.Equal(WireErrorCode.Truncated, e.Code);
    }

    private delegate T ReadFunc<T>(ref MessagePackReader r);

    private delegate void ReadAction(ref MessagePackReader r);

    private static T Read<T>(string hex, ReadFunc<T> read, MessagePackLimits? limits = null)
    {
        var r = new MessagePackReader(Convert.FromHexString(hex), limits);
        var v = read(ref r);
        Assert.True(r.End, $"{r.Remaining} bytes left");
        return v;
    }

    private static WireFormatException Fails(string hex, ReadAction read, MessagePackLimits? limits = null)
    {
        var r = new MessagePackReader(Convert.FromHexString(hex), limits);
        try
        {
            read(ref r);
        }
        catch (WireFormatException e)
        {
            Assert.Equal(0, r.Consumed);
            return e;
        }
        throw new Xunit.Sdk.XunitException($"{hex} was accepted");
    }

    private static IEnumerable<int> Cuts(int length) =>
        length <= 600 ? Enumerable.Range(0, length) : Enumerable.Range(0, 300).Concat(Enumerable.Range(length - 300, 300));
}
