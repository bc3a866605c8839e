using System.Net;
using BackupAppliance.Integration.Tests.Support;
using BackupAppliance.Nbd;
using BackupAppliance.Thin.Pool;

namespace BackupAppliance.Integration.Tests;

/// <summary>
/// Reads the server sends without copying (spliced from the pool's data file, so the socket holds
/// references to the file's cached pages, not copies) against the reuse of those blocks: a client
/// that has not yet read its replies when the blocks are discarded, committed, and filled with
/// another volume's data must still get the bytes it asked for (or zeroes, for a read the server
/// took after the discard), never the other volume's.
/// </summary>
public sealed class LentReadSafetyTests
{
    private const int Bs = 64 * 1024;
    private const int Blocks = 64; // 4 MiB

    [Fact]
    public async Task Replies_waiting_in_the_socket_keep_their_bytes_when_their_blocks_go_to_another_volume()
    {
        await using var dir = new TempDir("lent");
        // Room for one volume and a little more: the second volume can only use blocks the first gave back.
        await using var pool = ThinPool.Create(Path.Combine(dir.Path, "pool"), (Blocks + 4L) * Bs, new PoolSettings());
        var a = pool.CreateVolume("a", (long)Blocks * Bs);
        var aBytes = Pattern(0xA0);
        await a.WriteAsync(0, aBytes, fua: true, default);

        await using var server = new NbdServer(new NbdVolumeExports(a), new NbdServerOptions { TcpEndPoint = new IPEndPoint(IPAddress.Loopback, 0) });
        await server.StartAsync();
        var (client, _) = await RawNbdClient.OpenAsync(server.TcpEndPoint!.Port, "a", structured: false);
        await using var _c = client;
        client.Socket.ReceiveBufferSize = 64 * 1024 * 1024;

        // Sixteen 1 MiB reads of the whole volume, four times over; the replies are left unread.
        const int Reads = 16;
        for (int i = 0; i < Reads; i++)
            await client.SendAsync(Wire.Request(0, Wire.CmdRead, (ulong)i, (ulong)(i % 4) << 20, 1 << 20));
        // Wait until the first replies are in the client's socket (each is a header and 1 MiB).
        for (int i = 0; i < 500 && client.Socket.Available < 4 << 20; i++)
            await Task.Delay(10);
        Assert.True(client.Socket.Available >= 4 << 20, $"only {client.Socket.Available} bytes of replies arrived");

        // Meanwhile the blocks behind those replies are discarded, the discard committed (the pool
        // may now reuse them), and a second volume writes all over them.
        await a.DiscardAsync(0, (long)Blocks * Bs, fua: true, default);
        var b = pool.CreateVolume("b", (long)Blocks * Bs);
        var bBytes = Pattern(0xB0);
        await b.WriteAsync(0, bBytes, fua: true, default);
        Assert.Equal(bBytes, await ReadAll(b));

        int old = 0, zero = 0;
        for (int i = 0; i < Reads; i++)
        {
            var (error, cookie) = await client.ReadSimpleReplyAsync();
            Assert.Equal(0u, error);
            var data = await client.ReadExactAsync(1 << 20);
            long offset = (long)(cookie % 4) << 20;
            for (int at = 0; at < data.Length; at += Bs)
            {
                var got = data.AsSpan(at, Bs);
                if (got.SequenceEqual(aBytes.AsSpan((int)offset + at, Bs)))
                    old++;
                else if (!got.ContainsAnyExcept((byte)0))
                    zero++;
                else
                    Assert.Fail($"read {cookie}: block {(offset + at) / Bs} holds neither volume a's bytes nor zeroes"
                        + (got.SequenceEqual(bBytes.AsSpan((int)offset + at, Bs)) ? " but volume b's" : ""));
            }
        }
        // The replies that had arrived before the discard are the old bytes.
        Assert.True(old >= 4 * 16, $"{old} blocks of old bytes, {zero} of zeroes");
    }

    /// <summary>A different byte pattern per 64 KiB block, tagged by <paramref name="tag"/>.</summary>
    private static byte[] Pattern(byte tag)
    {
        var bytes = new byte[Blocks * Bs];
        var random = new Random(tag);
        random.NextBytes(bytes);
        for (int b = 0; b < Blocks; b++)
            bytes[b * Bs] = tag;
        return bytes;
    }

    private static async Task<byte[]> ReadAll(ThinVolume v)
    {
        var bytes = new byte[v.Size];
        await v.ReadAsync(0, bytes, default);
        return bytes;
    }
}
