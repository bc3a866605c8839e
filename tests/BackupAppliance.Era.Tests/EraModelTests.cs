using BackupAppliance.Era.Tests.Support;
using Xunit.Abstractions;

namespace BackupAppliance.Era.Tests;

/// <summary>
/// Seeded random workloads (marks, commits, checkpoints, bounded digest steps, metadata snapshots,
/// clean reopens and crashes) beside <see cref="EraModel"/>; at intervals the real era_check passes,
/// every reference count is right and era_invalidate equals WrittenSince for every era.
/// </summary>
public sealed class EraModelTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ITestOutputHelper _out;

    public EraModelTests(ITestOutputHelper output) => _out = output;

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(1, 1000u, 400)]
    [InlineData(2, 4093u, 600)]
    [InlineData(3, 70001u, 500)]
    [InlineData(4, 131u, 800)]
    public void RandomWorkload_MatchesModel_AndTheRealTools(int seed, uint nrBlocks, int steps)
    {
        var rng = new Random(seed);
        string path = _dir.File($"era-{seed}.bin");
        var md = EraMetadata.Create(path, 128, nrBlocks);
        var model = new EraModel(nrBlocks, md.CurrentEra);
        int oracleRuns = 0, crashes = 0;
        try
        {
            for (int step = 0; step < steps; step++)
            {
                string ctx = $"seed {seed}, step {step}";
                int op = rng.Next(100);
                if (op < 45)
                {
                    uint first = (uint)rng.Next((int)nrBlocks);
                    uint len = rng.Next(4) == 0 ? (uint)rng.Next(1, 300) : (uint)rng.Next(1, 4);
                    uint end = Math.Min(nrBlocks, first + len);
                    md.Mark(first, end);
                    model.Mark(first, end);
                }
                else if (op < 60)
                {
                    md.Commit();
                    model.Commit();
                }
                else if (op < 70)
                {
                    Assert.Equal(md.CurrentEra + 1, md.Checkpoint());
                    model.NewEra();
                }
                else if (op < 82)
                {
                    uint below = (uint)rng.Next(1, (int)md.CurrentEra + 2);
                    md.DigestStep(below, rng.Next(64, 4096));
                }
                else if (op < 85)
                {
                    if (md.MetadataSnapshot == 0)
                    {
                        md.TakeMetadataSnapshot();
                        model.NewEra();
                    }
                    else
                    {
                        md.DropMetadataSnapshot();
                        model.Commit();
                    }
                }
                else if (op < 88)
                {
                    md.Dispose();
                    md = EraMetadata.Open(path, EraOpenMode.Activate);
                    model.NewEra(); // postsuspend archives the era with its marks, preresume starts the next
                    Assert.Equal(model.CurrentEra, md.CurrentEra);
                }
                else if (op < 90)
                {
                    // Crash: copy the file as it is (uncommitted blocks may be in it), recover the copy.
                    string copy = _dir.File($"crash-{seed}-{step}.bin");
                    File.Copy(path, copy);
                    md.Dispose();
                    File.Move(copy, path, overwrite: true);
                    md = EraMetadata.Open(path, EraOpenMode.Activate);
                    model.Crash();
                    Assert.Equal(model.CurrentEra, md.CurrentEra);
                    crashes++;
                }
                else
                {
                    uint era = (uint)rng.Next(0, (int)md.CurrentEra + 2);
                    Assert.True(model.WrittenSince(era).SequenceEqual(EraModel.Runs(md, era)), $"{ctx}: WrittenSince({era}) differs from the model");
                    for (int i = 0; i < 20; i++)
                    {
                        uint b = (uint)rng.Next((int)nrBlocks);
                        Assert.True(model.IsMarkedCommitted(b) == md.IsMarked(b), $"{ctx}: IsMarked({b})");
                    }
                }
                if (step % 100 == 99)
                {
                    md.Checkpoint();
                    model.NewEra();
                    CompareWithOracles(path, md, model, ctx, rng);
                    oracleRuns++;
                }
            }
            md.Checkpoint();
            model.NewEra();
            CompareWithOracles(path, md, model, $"seed {seed}, end", sample: null);
            oracleRuns++;
        }
        finally
        {
            md.Dispose();
        }
        _out.WriteLine($"seed {seed}: {steps} steps, final era {model.CurrentEra}, {oracleRuns} oracle comparisons, {crashes} crashes");
    }

    /// <summary>Every era from 0 to current + 1, or with <paramref name="sample"/> the ends and six random ones (process launches are slow).</summary>
    private static void CompareWithOracles(string path, EraMetadata md, EraModel model, string ctx, Random? sample)
    {
        EraOracle.AssertCheckPasses(path, ctx);
        EraRefAudit.Verify(path, ctx);
        var eras = Enumerable.Range(0, (int)md.CurrentEra + 2).Select(e => (uint)e).ToList();
        if (sample is not null)
            eras = [0, 1, md.CurrentEra, md.CurrentEra + 1, .. eras.OrderBy(_ => sample.Next()).Take(6)];
        foreach (uint era in eras)
        {
            var ours = EraModel.Runs(md, era);
            Assert.True(model.WrittenSince(era).SequenceEqual(ours), $"{ctx}: WrittenSince({era}) differs from the model");
            var real = EraOracle.Invalidate(path, era);
            Assert.True(real.SequenceEqual(ours), $"{ctx}: era_invalidate --written-since {era} gives {real.Count} runs, WrittenSince {ours.Count}");
        }
    }
}
