using System.Security.Cryptography;

namespace BackupAppliance.Transport.Nats.Tests.Support;

public static class Payloads
{
    /// <summary>Seeded pseudo-random bytes: every payload differs, and a failure can be replayed.</summary>
    public static byte[] Random(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }

    public static string Sha256(ReadOnlyMemory<byte> bytes) => Convert.ToHexString(SHA256.HashData(bytes.Span));
}
