using System.Text;

namespace BackupAppliance.Replication.Tests.Support;

/// <summary>Seeded random MessagePack values (<see cref="MsgValue"/> model) that favour format boundaries.</summary>
public sealed class RandomValues(int seed)
{
    private static readonly long[] EdgeIntegers =
    [
        0, 1, 127, 128, 255, 256, 65535, 65536, uint.MaxValue, uint.MaxValue + 1L, long.MaxValue,
        -1, -32, -33, -128, -129, short.MinValue, short.MinValue - 1, int.MinValue, int.MinValue - 1L, long.MinValue,
    ];

    private static readonly int[] EdgeLengths = [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536];

    private readonly Random _rng = new(seed);

    public object? Next(int depth = 0)
    {
        int pick = _rng.Next(depth >= 3 ? 7 : 9);
        return pick switch
        {
            0 => null,
            1 => _rng.Next(2) == 0,
            2 => Integer(),
            3 => BitConverter.Int64BitsToDouble(_rng.NextInt64() & ~(0x7ffL << 52) | ((long)_rng.Next(1, 0x7ff) << 52)), // never NaN or infinity
            4 => Text(Length()),
            5 => Bytes(Length()),
            6 => Integer(),
            7 => Enumerable.Range(0, SmallCount()).Select(_ => Next(depth + 1)).ToArray(),
            _ => new MsgMap(Enumerable.Range(0, SmallCount()).Select(i => new KeyValuePair<object?, object?>($"k{i}-{Text(_rng.Next(4))}", Next(depth + 1))).ToList()),
        };
    }

    public object Integer()
    {
        long edge = EdgeIntegers[_rng.Next(EdgeIntegers.Length)];
        return _rng.Next(4) switch
        {
            0 => edge,
            1 => edge == long.MaxValue ? ulong.MaxValue - (ulong)_rng.Next(3) : edge + 1,
            2 => edge == long.MinValue ? edge : edge - 1,
            _ => _rng.NextInt64(long.MinValue, long.MaxValue) >> _rng.Next(64),
        };
    }

    /// <summary>A string of exactly <paramref name="utf8Bytes"/> UTF-8 bytes, mixing 1-, 2-, 3- and 4-byte characters.</summary>
    public string Text(int utf8Bytes)
    {
        var sb = new StringBuilder();
        int left = utf8Bytes;
        while (left > 0)
        {
            int width = Math.Min(left, _rng.Next(1, 5));
            sb.Append(width switch
            {
                1 => ((char)_rng.Next(0x20, 0x7f)).ToString(),
                2 => ((char)_rng.Next(0x80, 0x800)).ToString(),
                3 => ((char)_rng.Next(0xe000, 0x10000)).ToString(),
                _ => char.ConvertFromUtf32(_rng.Next(0x10000, 0x110000)),
            });
            left -= width;
        }
        return sb.ToString();
    }

    public byte[] Bytes(int length)
    {
        var b = new byte[length];
        _rng.NextBytes(b);
        return b;
    }

    private int Length()
    {
        int edge = EdgeLengths[_rng.Next(EdgeLengths.Length)];
        // Mostly short values; the 64 KiB edges now and then.
        if (edge >= 65535 && _rng.Next(4) != 0)
            edge = _rng.Next(300);
        return Math.Max(0, edge + _rng.Next(-1, 2));
    }

    private int SmallCount() => _rng.Next(10) == 0 ? _rng.Next(14, 40) : _rng.Next(0, 5);
}
