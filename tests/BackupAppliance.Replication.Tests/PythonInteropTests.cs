using System.Text;
using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;
using Xunit.Abstractions;

namespace BackupAppliance.Replication.Tests;

/// <summary>
/// Interop with an independent implementation: Debian's python3-msgpack (as /usr/bin/python3).
/// Our bytes must decode in python to the same values and re-encode there to the very same bytes
/// (so our smallest encodings are python's); python's bytes must decode with our reader to the same
/// values and re-encode with our writer to the same bytes.
/// </summary>
public class PythonInteropTests(ITestOutputHelper output)
{
    private static int Seed =>
        int.TryParse(Environment.GetEnvironmentVariable("BAPP_WIRE_FUZZ_SEED"), out var s) ? s : 20260314;

    [Fact]
    public async Task OurBytesDecodeInPythonAndReencodeIdentically()
    {
        var values = new List<object?>
        {
            null, true, false, 1.5, -0.0, double.PositiveInfinity, double.MaxValue,
            new string('a', 31), new string('a', 32), new string('é', 128), new string('x', 65535), new string('x', 65536),
            new byte[0], new byte[255], new byte[256], new byte[65535], new byte[65536],
            Enumerable.Range(0, 15).Select(i => (object?)(long)i).ToArray(),
            Enumerable.Range(0, 16).Select(i => (object?)(long)i).ToArray(),
            Enumerable.Range(0, 65536).Select(i => (object?)(long)(i & 0x7f)).ToArray(),
            new MsgMap(Enumerable.Range(0, 16).Select(i => new KeyValuePair<object?, object?>($"key{i}", (long)-i)).ToList()),
            ulong.MaxValue,
        };
        foreach (long edge in new long[] { 0, 127, 128, 255, 256, 65535, 65536, uint.MaxValue, uint.MaxValue + 1L, long.MaxValue,
                     -1, -32, -33, -128, -129, -32768, -32769, int.MinValue, int.MinValue - 1L, long.MinValue })
            values.Add(edge);
        var random = new RandomValues(Seed);
        for (int i = 0; i < 300; i++)
            values.Add(random.Next());

        var input = new StringBuilder();
        long bytes = 0;
        foreach (var v in values)
        {
            var encoded = MsgValue.Encode(v);
            bytes += encoded.Length;
            input.Append(Convert.ToHexStringLower(encoded)).Append('\n');
        }
        var script = MsgValue.PythonCanon + """
            for line in sys.stdin:
                data = bytes.fromhex(line.strip())
                v = unpack(data)
                again = msgpack.packb(v, use_bin_type=True)
                print(canon(v) + '\t' + ('same' if again == data else 'diff ' + again.hex()))
            """;
        var lines = (await ExternalProcess.PythonAsync(script, Encoding.ASCII.GetBytes(input.ToString()))).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(values.Count, lines.Length);
        for (int i = 0; i < values.Count; i++)
        {
            var parts = lines[i].Split('\t');
            Assert.True(MsgValue.Canon(values[i]) == parts[0], $"seed {Seed} value {i}: python read {Short(parts[0])}, we wrote {Short(MsgValue.Canon(values[i]))}");
            Assert.True(parts[1] == "same", $"seed {Seed} value {i}: python encodes {Short(MsgValue.Canon(values[i]))} differently: {Short(parts[1])}");
        }
        output.WriteLine($"seed {Seed}: {values.Count} values, {bytes} bytes, all decoded by python and re-encoded byte for byte");
    }

    [Fact]
    public async Task PythonBytesDecodeWithOursAndReencodeIdentically()
    {
        var script = MsgValue.PythonCanon + $$"""
            import random
            rng = random.Random({{Seed}})
            edges = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1,
                     -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63]
            lengths = [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536]
            def text(n):
                out = []
                while n > 0:
                    w = min(n, rng.randint(1, 4))
                    cp = {1: rng.randint(0x20, 0x7e), 2: rng.randint(0x80, 0x7ff), 3: rng.randint(0xe000, 0xffff), 4: rng.randint(0x10000, 0x10ffff)}[w]
                    out.append(chr(cp)); n -= w
                return ''.join(out)
            def length():
                n = rng.choice(lengths)
                if n >= 65535 and rng.randrange(4): n = rng.randrange(300)
                return max(0, n + rng.randint(-1, 1))
            def value(depth):
                k = rng.randrange(7 if depth >= 3 else 9)
                if k == 0: return None
                if k == 1: return rng.random() < 0.5
                if k in (2, 6):
                    e = rng.choice(edges) + rng.choice([-1, 0, 1])
                    return e if -2**63 <= e < 2**64 else 0
                if k == 3: return rng.uniform(-1e300, 1e300) * rng.choice([1, 1e-300])
                if k == 4: return text(length())
                if k == 5: return rng.randbytes(length())
                n = rng.randrange(14, 40) if rng.randrange(10) == 0 else rng.randrange(5)
                if k == 7: return [value(depth + 1) for _ in range(n)]
                return {('k%d-' % i) + text(rng.randrange(4)): value(depth + 1) for i in range(n)}
            cases = [(v, True) for v in edges] + [(value(0), True) for _ in range(300)]
            cases += [(1.5, False), (-2.25, False)]                        # packed as float32 below
            cases += [(msgpack.ExtType(5, b'abc'), True), (msgpack.ExtType(127, bytes(16)), True), (msgpack.ExtType(1, bytes(300)), True)]
            cases += [([1, 'x' * 40, b'\x00' * 3, {'a': None}], True)]
            for i, (v, exact) in enumerate(cases):
                if not exact:
                    data = msgpack.packb(v, use_single_float=True)
                else:
                    data = msgpack.packb(v, use_bin_type=True)
                print(data.hex() + '\t' + canon(v) + '\t' + ('float32' if not exact else ('ext' if 'x:' in canon(v) else 'exact')))
            """;
        var lines = (await ExternalProcess.PythonAsync(script)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length > 300, $"python printed only {lines.Length} cases");
        int exact = 0;
        foreach (var (line, i) in lines.Select((l, i) => (l, i)))
        {
            var parts = line.Split('\t');
            var bytes = Convert.FromHexString(parts[0]);
            var v = MsgValue.Decode(bytes);
            Assert.True(MsgValue.Canon(v) == parts[1], $"seed {Seed} case {i}: we read {Short(MsgValue.Canon(v))}, python wrote {Short(parts[1])}");
            if (parts[2] == "exact")
            {
                Assert.True(bytes.AsSpan().SequenceEqual(MsgValue.Encode(v)), $"seed {Seed} case {i}: we encode {Short(parts[1])} differently from python");
                exact++;
            }
        }
        Assert.Equal(lines.Length - 5, exact);
        output.WriteLine($"seed {Seed}: {lines.Length} python values decoded, {exact} re-encoded byte for byte");
    }

    private static string Short(string s) => s.Length <= 200 ? s : s[..200] + $"… ({s.Length} chars)";
}
