using System.CommandLine;
using BackupAppliance.Thin;
using BackupAppliance.Thin.Delta;
using Spectre.Console;

namespace BackupAppliance.Cli.Commands;

/// <summary>
/// <c>bapp demo --dir DIR</c>: the main job on the embedded default, as far as it is built: a pool's
/// metadata with a volume, a snapshot, changes after it, and the delta a backup would send.
/// </summary>
public static class DemoCommand
{
    // Each commit is a transaction the pool's owner names, as with dm-thin's set_transaction_id.
    private static void Commit(ThinMetadata md)
    {
        md.SetTransactionId(md.TransactionId, md.TransactionId + 1);
        md.Commit();
    }

    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var dir = new Option<string>("--dir") { Description = "Working folder (created)", DefaultValueFactory = _ => ".demo" };
        var blocks = new Option<int>("--blocks") { Description = "Blocks the volume has written before the snapshot", DefaultValueFactory = _ => 100_000 };
        var cmd = new Command("demo", "Create pool metadata, a volume and a snapshot, change blocks, print the delta") { dir, blocks };
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            string d = r.GetValue(dir)!;
            int n = r.GetValue(blocks);
            if (n < 100)
                throw new ArgumentException("--blocks must be at least 100");
            Directory.CreateDirectory(d);
            string meta = Path.Combine(d, "metadata");
            using (var f = new FileStream(meta, FileMode.Create))
                f.SetLength(64L << 20);
            var console = ProgressConsole.Create(stderr);

            using var md = ThinMetadata.Create(meta, dataBlockSize: 128, nrDataBlocks: (ulong)n * 2);
            md.CreateThin(0);
            console.Progress().Start(ctx =>
            {
                var task = ctx.AddTask("volume 0: writing blocks", maxValue: n);
                for (int v = 0; v < n; v++)
                {
                    md.Insert(0, (ulong)v, md.AllocateDataBlock());
                    if (v % 1000 == 0)
                        task.Value = v;
                }
                task.Value = n;
            });
            Commit(md);
            md.CreateSnapshot(1, 0);
            Commit(md);

            // After the snapshot: overwrite 1% (breaking sharing), discard a few, write past the end.
            var rng = new Random(42);
            int changed = n / 100;
            for (int i = 0; i < changed; i++)
                md.Insert(0, (ulong)rng.Next(n), md.AllocateDataBlock());
            for (int i = 0; i < 5; i++)
                md.Remove(0, (ulong)rng.Next(n));
            md.Insert(0, (ulong)n + 10, md.AllocateDataBlock());
            Commit(md);

            var table = new Table().AddColumns("device", "mapped blocks", "created (time)", "snapshotted (time)");
            foreach (ulong id in md.DeviceIds())
            {
                var det = md.GetDetails(id);
                table.AddRow(id.ToString(), det.MappedBlocks.ToString(), det.CreationTime.ToString(), det.SnapshottedTime.ToString());
            }
            console.Write(table);
            console.MarkupLine($"pool metadata: [bold]{Markup.Escape(meta)}[/], transaction {md.TransactionId}, time {md.Time}, " +
                $"{md.MetadataBlocksUsed}/{md.NrMetadataBlocks} metadata blocks, {md.DataBlocksUsed}/{md.NrDataBlocks} data blocks in use");
            md.Dispose();

            using var reader = ThinReader.Open(meta);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var changes = DeltaCollector.Changes(reader, reader.MappingRoot(1)!.Value, reader.MappingRoot(0)!.Value);
            sw.Stop();
            console.MarkupLine($"changed ranges between snapshot 1 and volume 0: [bold]{changes.Count}[/] " +
                $"({changes.Sum(c => (long)c.Length)} blocks), found in {sw.Elapsed.TotalMilliseconds:F1} ms without reading shared subtrees");
            string deltaPath = Path.Combine(d, "delta.changes-only.xml");
            using (var w = new StreamWriter(deltaPath) { NewLine = "\n" })
                DeltaXml.Write(reader, 1, 0, verbose: false, changesOnly: true, w);
            var lines = File.ReadAllLines(deltaPath);
            console.MarkupLine($"the delta a backup would send (thin_delta format, changes only) is in [bold]{Markup.Escape(deltaPath)}[/]; its first lines:");
            foreach (var line in lines.Take(8))
                stdout.WriteLine(line);
            stdout.WriteLine($"    ... {lines.Length - 8} more lines");
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
