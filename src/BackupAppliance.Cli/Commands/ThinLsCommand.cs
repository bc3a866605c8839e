using System.CommandLine;
using BackupAppliance.Thin.Listing;

namespace BackupAppliance.Cli.Commands;

/// <summary><c>bapp thin ls</c>: thin_ls's table, byte for byte.</summary>
public static class ThinLsCommand
{
    public static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var file = new Argument<string>("file") { Description = "Metadata file (or device)" };
        var noHeaders = new Option<bool>("--no-headers") { Description = "Leave out the header line" };
        var format = new Option<string?>("--format", "-o")
        {
            Description = "Comma-separated columns: " + string.Join(",", ThinLsFields.All.Select(f => f.Header())),
        };
        var snap = MetadataSnapArgs.CreateFlag();
        // thin_ls accepts -m<block> but ignores the block; so do we.
        var snapBlock = MetadataSnapArgs.CreateBlock();
        var cmd = new Command("ls", "List thin devices with mapped, exclusive and shared sizes (like thin_ls)");
        cmd.Arguments.Add(file);
        cmd.Options.Add(noHeaders);
        cmd.Options.Add(format);
        cmd.Options.Add(snap);
        cmd.Options.Add(snapBlock);
        cmd.SetAction(r => CommandRunner.Run(stderr, () =>
        {
            string? fields = r.GetValue(format);
            var options = new ThinLsOptions(
                MetadataSnap: r.GetValue(snap) || r.GetValue(snapBlock) is not null,
                Headers: !r.GetValue(noHeaders),
                Fields: fields is null ? null : ThinLsFields.Parse(fields));
            stdout.Write(ThinLister.List(r.GetValue(file)!, options));
            stdout.Flush();
            return 0;
        }));
        return cmd;
    }
}
