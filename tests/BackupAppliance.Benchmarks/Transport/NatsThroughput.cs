using System.Buffers.Binary;
using System.Diagnostics;
using BackupAppliance.Replication.Transport;
using BackupAppliance.Transport.Nats;

namespace BackupAppliance.Benchmarks.Transport;

/// <summary>
/// Publish + consume throughput through a real nats-server: one connection publishes a fixed volume
/// of payloads as fast as it can, another consumes them; the time runs from the first publish to the
/// last payload received. Each payload carries its number, so loss or reordering is reported, not
/// hidden. Tuned (4 MiB socket buffers, NoDelay) and untuned (the client's own) side by side.
/// </summary>
public static class NatsThroughput
{
    public const string Command = "nats-throughput";

    public static async Task<int> RunAsync(string[] args)
    {
        string? url = null;
        int mib = 64;
        int[] sizes = [64 * 1024, 1024 * 1024];
        int pingMs = (int)new NatsTransportOptions().PingInterval.TotalMilliseconds;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--url": url = args[++i]; break;
                case "--mib": mib = int.Parse(args[++i]); break;
                case "--sizes": sizes = args[++i].Split(',').Select(int.Parse).ToArray(); break;
                case "--ping-ms": pingMs = int.Parse(args[++i]); break;
                default:
                    Console.Error.WriteLine($"{Command}: unknown argument '{args[i]}' (--url nats://host:port [--mib N] [--sizes 65536,1048576] [--ping-ms 500])");
                    return 2;
            }
        }
        if (url is null)
        {
            Console.Error.WriteLine($"{Command}: --url is required");
            return 2;
        }
        Console.WriteLine($"client pings every {pingMs} ms, 2 unanswered = dead");
        Console.WriteLine($"{"payload",10} {"socket",8} {"MiB",6} {"seconds",8} {"MiB/s",8} {"lost",5}");
        foreach (int size in sizes)
        {
            foreach (bool tuned in new[] { false, true })
            {
                Result r;
                try
                {
                    r = await MeasureAsync(url, size, tuned, (long)mib * 1024 * 1024, pingMs);
                }
                catch (Exception e) when (e is TransportException or TimeoutException)
                {
                    Console.WriteLine($"{size,10} {(tuned ? "tuned" : "untuned"),8} failed: {e.Message}");
                    continue;
                }
                Console.WriteLine($"{size,10} {(tuned ? "tuned" : "untuned"),8} {r.Bytes / 1048576.0,6:F0} {r.Seconds,8:F2} {r.Bytes / 1048576.0 / r.Seconds,8:F1} {r.Lost,5}");
            }
        }
        return 0;
    }

    private readonly record struct Result(long Bytes, double Seconds, long Lost);

    private static async Task<Result> MeasureAsync(string url, int size, bool tuned, long total, int pingMs)
    {
        var options = new NatsTransportOptions { Urls = [url], SocketBufferSize = tuned ? 4 * 1024 * 1024 : 0, PingInterval = TimeSpan.FromMilliseconds(pingMs) };
        await using var publisher = await NatsTransport.ConnectAsync(options);
        await using var consumer = await NatsTransport.ConnectAsync(options);
        int count = (int)Math.Max(1, total / size);
        string subject = $"bench.{size}.{(tuned ? "tuned" : "untuned")}";
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        long received = 0;
        long outOfOrder = 0;
        long expected = 0;
        await using var sub = await consumer.SubscribeAsync(subject, (m, _) =>
        {
            long n = BinaryPrimitives.ReadInt64LittleEndian(m.Payload.Span);
            if (n != expected)
                outOfOrder++;
            expected = n + 1;
            if (++received == count || n == count - 1)
                done.TrySetResult();
            return ValueTask.CompletedTask;
        });
        await consumer.FlushAsync(TimeSpan.FromSeconds(10));
        var payload = new byte[size];
        new Random(1).NextBytes(payload);
        var clock = Stopwatch.StartNew();
        for (long i = 0; i < count; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(payload, i);
            await publisher.PublishAsync(subject, payload);
        }
        await publisher.FlushAsync(TimeSpan.FromSeconds(120));
        await done.Task.WaitAsync(TimeSpan.FromSeconds(300));
        double seconds = clock.Elapsed.TotalSeconds;
        return new Result(received * size, seconds, count - received + outOfOrder);
    }
}
