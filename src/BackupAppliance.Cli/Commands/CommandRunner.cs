using BackupAppliance.Core;

namespace BackupAppliance.Cli.Commands;

/// <summary>The one place where typed errors become messages and exit codes.</summary>
public static class CommandRunner
{
    public static int Run(TextWriter stderr, Func<int> body) =>
        RunAsync(stderr, () => Task.FromResult(body())).GetAwaiter().GetResult();

    public static async Task<int> RunAsync(TextWriter stderr, Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (BackupAppliance.Core.VolumeException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (CorruptMetadataException e)
        {
            stderr.WriteLine($"error: metadata is corrupt: {e.Message}");
            return 1;
        }
        catch (SpaceExhaustedException e)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is BackupAppliance.Hosting.ConfigException or BackupAppliance.Hosting.DaemonNotRunningException
            or BackupAppliance.Replication.Sending.BackupRefusedException or TimeoutException)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or InvalidDataException or ArgumentException or InvalidOperationException or KeyNotFoundException)
        {
            stderr.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
