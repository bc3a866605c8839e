using System.CommandLine;
using BackupAppliance.Cli.Commands;
using BackupAppliance.Cli.Commands.Backup;
using BackupAppliance.Cli.Commands.Era;
using BackupAppliance.Cli.Commands.Pool;
using BackupAppliance.Cli.Commands.Serve;

namespace BackupAppliance.Cli;

/// <summary>The <c>bapp</c> command tree. Each command lives in its own file under Commands/.</summary>
public static class BappApp
{
    public static RootCommand Build(TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("BackupAppliance: replicated incremental backups of block volumes");
        var thin = new Command("thin", "Tools on kernel-format thin-pool metadata files (like thin-provisioning-tools)");
        thin.Subcommands.Add(ThinDumpCommand.Create(stdout, stderr));
        thin.Subcommands.Add(ThinRestoreCommand.Create(stdout, stderr));
        thin.Subcommands.Add(ThinDeltaCommand.Create(stdout, stderr));
        thin.Subcommands.Add(ThinExerciseCommand.Create(stdout, stderr));
        thin.Subcommands.Add(ThinBenchCommand.Create(stdout, stderr));
        thin.Subcommands.Add(ThinCheckCommand.Create(stdout, stderr));
        thin.Subcommands.Add(ThinLsCommand.Create(stdout, stderr));
        root.Subcommands.Add(thin);
        var era = new Command("era", "Tools on kernel-format dm-era metadata files (like era_dump, era_invalidate, era_restore, era_check)");
        era.Subcommands.Add(EraDumpCommand.Create(stdout, stderr));
        era.Subcommands.Add(EraInvalidateCommand.Create(stdout, stderr));
        era.Subcommands.Add(EraRestoreCommand.Create(stdout, stderr));
        era.Subcommands.Add(EraCheckCommand.Create(stdout, stderr));
        root.Subcommands.Add(era);
        var pool = new Command("pool", "Thin pools in a folder: create, status, resize, check");
        pool.Subcommands.Add(PoolCreateCommand.Create(stdout, stderr));
        pool.Subcommands.Add(PoolStatusCommand.Create(stdout, stderr));
        pool.Subcommands.Add(PoolResizeCommand.Create(stdout, stderr));
        pool.Subcommands.Add(PoolCheckCommand.Create(stdout, stderr));
        root.Subcommands.Add(pool);
        var vol = new Command("vol", "Volumes of a pool: create, snapshot, list, delete, import, export, changes, status");
        vol.Subcommands.Add(VolCreateCommand.Create(stdout, stderr));
        vol.Subcommands.Add(VolSnapshotCommand.Create(stdout, stderr));
        vol.Subcommands.Add(VolListCommand.Create(stdout, stderr));
        vol.Subcommands.Add(VolDeleteCommand.Create(stdout, stderr));
        vol.Subcommands.Add(VolImportCommand.Create(stdout, stderr));
        vol.Subcommands.Add(VolExportCommand.Create(stdout, stderr));
        vol.Subcommands.Add(VolChangesCommand.Create(stdout, stderr));
        vol.Subcommands.Add(VolStatusCommand.Create(stdout, stderr));
        vol.Subcommands.Add(VolChangesBenchCommand.Create(stdout, stderr));
        root.Subcommands.Add(vol);
        root.Subcommands.Add(ServeCommand.Create(stdout, stderr));
        root.Subcommands.Add(AgentRunCommand.Create(stdout, stderr));
        root.Subcommands.Add(ReceiverRunCommand.Create(stdout, stderr));
        var backup = new Command("backup", "Backups through the running agent and receiver: now, list");
        backup.Subcommands.Add(BackupNowCommand.Create(stdout, stderr));
        backup.Subcommands.Add(BackupListCommand.Create(stdout, stderr));
        root.Subcommands.Add(backup);
        root.Subcommands.Add(RestoreCommand.Create(stdout, stderr));
        root.Subcommands.Add(DemoCommand.Create(stdout, stderr));
        return root;
    }

    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = Build(stdout, stderr);
        // The daemons and `serve` handle SIGTERM and SIGINT themselves (stop, commit, exit 0); the
        // parser's own handler would race them and end the process after a timeout.
        var config = new InvocationConfiguration { Output = stdout, Error = stderr, ProcessTerminationTimeout = null };
        // No @response files: "@latest" is a restore argument, not a file of arguments to read.
        var parser = new ParserConfiguration { ResponseFileTokenReplacer = null };
        return root.Parse(MetadataSnapArgs.Normalize(args), parser).Invoke(config);
    }
}
