using BackupAppliance.Replication.Tests.Support;
using BackupAppliance.Replication.Wire;
using Xunit.Abstractions;
using static BackupAppliance.Replication.Tests.Support.Frames;

namespace BackupAppliance.Replication.Tests;

/// <summary>
/// Seeded fuzzing of the frame decoder and the reader: every input ends in a
/// <see cref="WireFormatException"/> or a valid message, never another exception.
/// Set BAPP_WIRE_FUZZ_SEED to replay a run; every failure names the seed and the case.
/// </summary>
public class FuzzTests(ITestOutputHelper output)
{
    private static int Seed =>
        int.TryParse(Environment.GetEnvironmentVariable("BAPP_WIRE_FUZZ_SEED"), out var s) ? s : 20260314;

    private static int Cases => Environment.GetEnvironmentVariable("BAPP_LONG_TESTS") == "1" ? 200_000 : 20_000;

    private static readonly byte[] Interesting =
    [
        0x00, 0x01, 0x0f, 0x10, 0x1f, 0x20, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6,
        0xc7, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff,
    ];

    [Fact]
    public void MutatedFramesAreRefusedOrValid()
    {
        int seed = Seed;
        var rng = new Random(seed);
        var bases = OneOfEach(rng).Select((m, i) => Encode((ulong)rng.NextInt64(), m)).ToList();
        bases.Add(Encode(9, Data(rng, 4, 32)));
        bases.Add(Encode(10, new DataFrame(6, Enumerable.Range(0, 300).Select(i => WireExtent.Discard(i * 8192L, 4096)).ToArray())));

        var codes = new Dictionary<WireErrorCode, int>();
        int valid = 0;
        for (int i = 0; i < Cases; i++)
        {
            var frame = Mutate(rng, bases[rng.Next(bases.Count)]);
            string where = $"seed {seed} case {i} ({frame.Length} bytes)";
            try
            {
                var decoded = FrameDecoder.Decode(frame);
                Assert.True(decoded.Message.FindProblem() is null, $"{where}: decoded an invalid message");
                // A message that decodes must survive its own round trip.
                var again = FrameDecoder.Decode(Encode(decoded.Sequence, decoded.Message));
                Assert.True(Describe(decoded.Message) == Describe(again.Message), $"{where}: round trip changed the message");
                valid++;
            }
            catch (WireFormatException e)
            {
                Assert.True(e.Offset >= 0 && e.Offset <= frame.Length, $"{where}: offset {e.Offset} outside the frame");
                codes[e.Code] = codes.GetValueOrDefault(e.Code) + 1;
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"{where}: {e.GetType().Name}: {e.Message}\nframe: {Convert.ToHexStringLower(frame)[..Math.Min(400, frame.Length * 2)]}\n{e}");
            }
        }
        output.WriteLine($"seed {seed}: {Cases} mutated frames, {valid} valid, refused: {string.Join(", ", codes.OrderBy(c => c.Key).Select(c => $"{c.Key} {c.Value}"))}");
        // The mutations reach past the checksum into every layer of the decoder.
        Assert.True(valid > Cases / 50, $"seed {seed}: only {valid} mutated frames were valid");
        foreach (var code in new[] { WireErrorCode.Malformed, WireErrorCode.Truncated, WireErrorCode.ChecksumMismatch, WireErrorCode.UnsupportedVersion, WireErrorCode.UnknownMessageType, WireErrorCode.Oversized })
            Assert.True(codes.GetValueOrDefault(code) > 0, $"seed {seed}: no frame was refused as {code}");
    }

    [Fact]
    public void RandomBytesOnlyEverGiveWireFormatExceptions()
    {
        int seed = Seed;
        var rng = new Random(seed);
        var limits = new MessagePackLimits { MaxDepth = 8, MaxStringBytes = 256, MaxBinaryBytes = 256, MaxCollectionCount = 64 };
        int read = 0;
        for (int i = 0; i < Cases; i++)
        {
            var bytes = new byte[rng.Next(1, 64)];
            for (int j = 0; j < bytes.Length; j++)
                bytes[j] = rng.Next(3) == 0 ? Interesting[rng.Next(Interesting.Length)] : (byte)rng.Next(256);
            try
            {
                var r = new MessagePackReader(bytes, limits);
                while (!r.End)
                {
                    MsgValue.Read(ref r);
                    read++;
                }
            }
            catch (WireFormatException)
            {
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"seed {seed} case {i}: {e.GetType().Name}: {e.Message} on {Convert.ToHexStringLower(bytes)}");
            }
        }
        Assert.True(read > Cases, $"seed {seed}: only {read} values read");
    }

    private static byte[] Mutate(Random rng, byte[] original)
    {
        var f = original.ToList();
        for (int n = rng.Next(1, 4); n > 0 && f.Count > 0; n--)
        {
            int at = rng.Next(f.Count);
            switch (rng.Next(9))
            {
                case 0: f[at] ^= (byte)(1 << rng.Next(8)); break;
                case 1: f[at] = (byte)rng.Next(256); break;
                case 2: f[at] = Interesting[rng.Next(Interesting.Length)]; break;
                case 3: f.Insert(at, Interesting[rng.Next(Interesting.Length)]); break;
                case 4: f.RemoveRange(at, Math.Min(f.Count - at, rng.Next(1, 9))); break;
                case 5: f.InsertRange(at, f.GetRange(at, Math.Min(f.Count - at, rng.Next(1, 17)))); break;
                case 6: f.RemoveRange(at, f.Count - at); break;
                case 7: // a boundary value over up to 4 bytes (lengths, counts, integers)
                    var edge = BitConverter.GetBytes(new[] { 0u, 1u, 0x7fu, 0x80u, 0xffu, 0x100u, 0xffffu, 0x10000u, 0x7fffffffu, 0xffffffffu }[rng.Next(10)]);
                    for (int k = 0; k < 4 && at + k < f.Count; k++)
                        f[at + k] = edge[3 - k];
                    break;
                default: // swap two bytes
                    int other = rng.Next(f.Count);
                    (f[at], f[other]) = (f[other], f[at]);
                    break;
            }
        }
        var frame = f.ToArray();
        if (frame.Length > 5 && rng.Next(4) != 0)
            FixCrc(frame); // most mutations must get past the checksum to test the rest
        return frame;
    }
}
