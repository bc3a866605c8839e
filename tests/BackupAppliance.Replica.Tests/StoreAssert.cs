using System.Security.Cryptography;
using BackupAppliance.Core;
using BackupAppliance.Replica.CrashWorkload;
using BackupAppliance.Replication.Receiving;

namespace BackupAppliance.Replica.Tests;

/// <summary>Checks shared by the store tests and the crash test: points read back as the images they should be.</summary>
internal static class StoreAssert
{
    public static async Task<byte[]> ReadAll(IBlockVolume v)
    {
        var b = new byte[v.Size];
        await v.ReadAsync(0, b, CancellationToken.None);
        return b;
    }

    /// <summary>Every listed point is backup i of the workload: its bytes, digest, base and table.</summary>
    public static async Task PointsAreWhole(ReplicaStore store, ReplicaWorkload w, string context)
    {
        var points = store.ListPoints(ReplicaWorkload.Agent, ReplicaWorkload.Volume);
        string? previous = null;
        var expected = new byte[w.Size];
        for (int i = 0; i < points.Count; i++)
        {
            var p = points[i];
            Assert.True(ReplicaWorkload.Target(i) == p.SourceSnapshot, $"{context}: point {i} ({p.Id}) is of {p.SourceSnapshot}, not {ReplicaWorkload.Target(i)}");
            Assert.Equal(previous, p.BasePoint);
            w.ApplyTo(expected, i);
            var actual = await ReadAll(store.OpenPoint(p.Agent, p.Volume, p.Id));
            Assert.True(SHA256.HashData(expected).AsSpan().SequenceEqual(SHA256.HashData(actual)), $"{context}: point {i} ({p.Id}) differs from image {i} at byte {FirstDifference(expected, actual)}");
            Assert.True(w.Digest(expected).AsSpan().SequenceEqual(p.Digest), $"{context}: point {i} ({p.Id}) records a digest that is not its image's");
            Assert.Equal(w.Extents(i).Sum(e => e.Data?.Length ?? 0), p.ChangedBytes);
            if (previous is not null)
                Assert.True(PointId.Compare(previous, p.Id) < 0, $"{context}: ids do not increase: {previous} then {p.Id}");
            previous = p.Id;
        }
    }

    public static long FirstDifference(byte[] a, byte[] b)
    {
        int n = Math.Min(a.Length, b.Length);
        int i = a.AsSpan(0, n).CommonPrefixLength(b.AsSpan(0, n));
        return i < n || a.Length != b.Length ? i : -1;
    }

    public static void ThinCheckPasses(string poolDir, string context)
    {
        var r = Tool.Run("thin_check", Path.Combine(poolDir, "metadata"));
        Assert.True(r.ExitCode == 0, $"{context}: thin_check failed: {r.Stdout}{r.Stderr}");
    }
}
