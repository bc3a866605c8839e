using System.Text;

namespace BackupAppliance.Replication.Tests.Support;

/// <summary>
/// Deterministic data that compresses like a disk does: log-like text, machine code (this runtime's
/// own CoreLib), runs of zeros and random (already compressed) bytes, in 64 KiB pieces.
/// </summary>
public static class SampleData
{
    public static byte[] Disk(int length, int seed)
    {
        var rng = new Random(seed);
        var binary = File.ReadAllBytes(typeof(object).Assembly.Location);
        var result = new byte[length];
        const int piece = 64 * 1024;
        for (int at = 0; at < length; at += piece)
        {
            var slice = result.AsSpan(at, Math.Min(piece, length - at));
            switch (rng.Next(4))
            {
                case 0:
                    Text(rng, slice);
                    break;
                case 1:
                    binary.AsSpan(rng.Next(binary.Length - piece), slice.Length).CopyTo(slice);
                    break;
                case 2:
                    slice.Clear();
                    slice[rng.Next(slice.Length)] = 1;
                    break;
                default:
                    rng.NextBytes(slice);
                    break;
            }
        }
        return result;
    }

    public static byte[] Random(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static void Text(Random rng, Span<byte> into)
    {
        string[] words = ["backup", "volume", "block", "extent", "snapshot", "commit", "replica", "error", "ok", "agent", "receiver", "pool"];
        var sb = new StringBuilder();
        while (sb.Length < into.Length)
        {
            sb.Append($"2026-03-{rng.Next(1, 29):00}T{rng.Next(24):00}:{rng.Next(60):00}:{rng.Next(60):00}Z ");
            for (int i = rng.Next(3, 12); i > 0; i--)
                sb.Append(words[rng.Next(words.Length)]).Append(' ');
            sb.Append("id=").Append(rng.Next(100000)).Append('\n');
        }
        Encoding.ASCII.GetBytes(sb.ToString(0, into.Length), into);
    }
}
