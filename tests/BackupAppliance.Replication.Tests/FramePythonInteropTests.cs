using System.Text;
using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;
using static BackupAppliance.Replication.Tests.Support.Frames;

namespace BackupAppliance.Replication.Tests;

/// <summary>
/// Frames against python3-msgpack and a crc32c written in python: python reads our frames as the
/// documented maps (PROTOCOL.md) with a correct trailer, and frames python builds from that
/// documentation decode with ours.
/// </summary>
public class FramePythonInteropTests
{
    private const string PythonCrc = """
        TABLE = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            TABLE.append(c)
        def crc32c(data):
            crc = 0xffffffff
            for b in data:
                crc = TABLE[(crc ^ b) & 0xff] ^ (crc >> 8)
            return crc ^ 0xffffffff
        assert crc32c(b'123456789') == 0xE3069283

        """;

    /// <summary>The documented fields of each message, in order, written out independently of the codec.</summary>
    private static List<KeyValuePair<object?, object?>> DocumentedFields(ReplicationMessage m) => m switch
    {
        BackupOffer o => Map(("agent", o.Agent), ("volume", o.Volume), ("base", o.BasePoint), ("target", o.TargetSnapshot), ("size", o.Size), ("block", (long)o.BlockSize)),
        BackupBegin b => Map(("stream", b.Stream), ("credit", b.CreditUpTo)),
        DataFrame d => Map(("stream", d.Stream), ("ext", d.Extents.Select(e => (object?)(e.Kind == ExtentKind.Data
            ? new object?[] { 0L, e.Offset, e.Length, e.Payload.ToArray(), e.Hashes.ToArray() }
            : new object?[] { (long)e.Kind, e.Offset, e.Length })).ToArray())),
        Credit c => Map(("stream", c.Stream), ("upto", c.UpTo)),
        Ack a => Map(("stream", a.Stream), ("durable", a.DurableSequence), ("pos", a.Position)),
        Commit c => Map(("stream", c.Stream), ("last", c.LastSequence), ("digest", c.ImageDigest)),
        CommitAck c => Map(("stream", c.Stream), ("point", c.Point), ("digest", c.ImageDigest)),
        Resume r => Map(("stream", r.Stream), ("after", r.AfterSequence), ("pos", r.Position), ("credit", r.CreditUpTo)),
        ErrorReply e => Map(("code", (long)e.Code), ("msg", e.Message), ("stream", e.Stream), ("about", e.About)),
        _ => throw new ArgumentException(m.GetType().Name),
    };

    [Fact]
    public async Task PythonReadsOurFramesAsDocumented()
    {
        var messages = OneOfEach(new Random(21));
        var input = new StringBuilder();
        var expected = new List<string>();
        ulong seq = 0;
        foreach (var m in messages)
        {
            input.Append(Convert.ToHexStringLower(Encode(seq, m))).Append('\n');
            var entries = Map(("v", 2L), ("t", MessageTypeNames.Of(m.Type)), ("seq", seq));
            entries.AddRange(DocumentedFields(m));
            expected.Add(MsgValue.Canon(new MsgMap(entries)));
            seq = seq * 5 + 100;
        }
        var script = MsgValue.PythonCanon + PythonCrc + """
            for line in sys.stdin:
                f = bytes.fromhex(line.strip())
                m = unpack(f)
                keys = list(m.keys())
                trailer = f[-5] == 0xce and int.from_bytes(f[-4:], 'big') == m['crc'] == crc32c(f[:-5])
                del m['crc']
                print(('crc-ok' if trailer else 'crc-bad') + '\t' + ','.join(keys[:3]) + '\t' + keys[-1] + '\t' + canon(m))
            """;
        var lines = (await ExternalProcess.PythonAsync(script, Encoding.ASCII.GetBytes(input.ToString()))).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(messages.Count, lines.Length);
        for (int i = 0; i < lines.Length; i++)
        {
            var parts = lines[i].Split('\t');
            Assert.Equal("crc-ok", parts[0]);
            Assert.Equal("v,t,seq", parts[1]);
            Assert.Equal("crc", parts[2]);
            Assert.True(expected[i] == parts[3], $"{messages[i].Type}: python read\n{parts[3]}\nexpected\n{expected[i]}");
        }
    }

    [Fact]
    public async Task FramesBuiltInPythonDecodeWithOurs()
    {
        var script = MsgValue.PythonCanon + PythonCrc + """
            def frame(entries, crc_ok=True):
                d = dict(entries)
                d['crc'] = 0xffffffff  # packs as 0xce + 4 bytes: the trailer's place
                b = msgpack.packb(d, use_bin_type=True)
                assert b[-5] == 0xce
                crc = crc32c(b[:-5]) ^ (0 if crc_ok else 1)
                return b[:-4] + crc.to_bytes(4, 'big')
            env = lambda t, seq: [('v', 2), ('t', t), ('seq', seq)]
            h = bytes(range(16))
            d = bytes(range(32))
            cases = [
                ('offer', frame(env('offer', 0) + [('agent', 'agent-01'), ('volume', 'vol_A'), ('base', None), ('target', 'snap-1'), ('size', 10 << 30), ('block', 65536)])),
                ('offer-incremental', frame(env('offer', 0) + [('agent', 'a'), ('volume', 'v'), ('base', 'point-17'), ('target', 'snap é'), ('size', 4096), ('block', 4096)])),
                ('begin', frame(env('begin', 1) + [('stream', 2**64 - 1), ('credit', 64)])),
                ('data', frame(env('data', 300) + [('stream', 5), ('ext', [[1, 0, 65536], [0, 65536, 8192, b'zstd-bytes', h + h], [2, 1 << 40, 4096]])])),
                ('credit', frame(env('credit', 2) + [('stream', 5), ('upto', 2**32)])),
                ('ack', frame(env('ack', 3) + [('stream', 5), ('durable', 300), ('pos', 73728)])),
                ('commit', frame(env('commit', 301) + [('stream', 5), ('last', 300), ('digest', d)])),
                ('commit_ack', frame(env('commit_ack', 4) + [('stream', 5), ('point', 'point-18'), ('digest', d)])),
                ('resume', frame(env('resume', 5) + [('stream', 5), ('after', 41), ('pos', 1 << 33), ('credit', 105)])),
                ('error', frame(env('error', 6) + [('code', 22), ('msg', 'expected frame 5'), ('stream', 5), ('about', 7)])),
                ('extra-field', frame(env('credit', 2) + [('stream', 5), ('window', {'bytes': 1 << 20}), ('upto', 9)])),
                ('newer', frame([('v', 3), ('t', 'credit'), ('seq', 1), ('stream', 5), ('upto', 9)])),
                ('unknown-type', frame(env('teleport', 1) + [('stream', 5)])),
                ('bad-crc', frame(env('credit', 2) + [('stream', 5), ('upto', 9)], crc_ok=False)),
            ]
            for name, f in cases:
                print(name + '\t' + f.hex())
            """;
        var lines = (await ExternalProcess.PythonAsync(script)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var frames = lines.Select(l => l.Split('\t')).ToDictionary(p => p[0], p => Convert.FromHexString(p[1]));
        var h = Enumerable.Range(0, 16).Select(i => (byte)i).ToArray();
        var d = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
        var expected = new Dictionary<string, (ulong Seq, ReplicationMessage Message)>
        {
            ["offer"] = (0, new BackupOffer("agent-01", "vol_A", null, "snap-1", 10L << 30, 65536)),
            ["offer-incremental"] = (0, new BackupOffer("a", "v", "point-17", "snap é", 4096, 4096)),
            ["begin"] = (1, new BackupBegin(ulong.MaxValue, 64)),
            ["data"] = (300, new DataFrame(5, [WireExtent.Zero(0, 65536), WireExtent.Data(65536, 8192, "zstd-bytes"u8.ToArray(), h.Concat(h).ToArray()), WireExtent.Discard(1L << 40, 4096)])),
            ["credit"] = (2, new Credit(5, 1UL << 32)),
            ["ack"] = (3, new Ack(5, 300, 73728)),
            ["commit"] = (301, new Commit(5, 300, d)),
            ["commit_ack"] = (4, new CommitAck(5, "point-18", d)),
            ["resume"] = (5, new Resume(5, 41, 1L << 33, 105)),
            ["error"] = (6, new ErrorReply(WireErrorCode.OutOfSequence, "expected frame 5", 5, 7)),
            ["extra-field"] = (2, new Credit(5, 9)),
        };
        foreach (var (name, (seq, message)) in expected)
        {
            var decoded = FrameDecoder.Decode(frames[name]);
            Assert.Equal(seq, decoded.Sequence);
            Assert.True(Describe(message) == Describe(decoded.Message), $"{name}: decoded {Describe(decoded.Message)}");
            // And our encoding of the same message is python's bytes exactly (same field order, smallest forms).
            if (name != "extra-field")
                Assert.True(frames[name].AsSpan().SequenceEqual(Encode(seq, message)), $"{name}: our bytes differ from python's");
        }
        Assert.Equal(WireErrorCode.UnsupportedVersion, Refused(frames["newer"]).Code);
        Assert.Equal(WireErrorCode.UnknownMessageType, Refused(frames["unknown-type"]).Code);
        Assert.Equal(WireErrorCode.ChecksumMismatch, Refused(frames["bad-crc"]).Code);
    }

    private static List<KeyValuePair<object?, object?>> Map(params (string Key, object? Value)[] entries) =>
        entries.Select(e => new KeyValuePair<object?, object?>(e.Key, e.Value switch
        {
            ulong u when u <= long.MaxValue => (long)u,
            var v => v,
        })).ToList();
}
