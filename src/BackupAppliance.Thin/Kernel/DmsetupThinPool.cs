using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;

namespace BackupAppliance.Thin.Kernel;

/// <summary>
/// A kernel thin pool driven by dmsetup: <c>dmsetup message &lt;pool&gt; 0 &lt;message&gt;</c> and
/// <c>dmsetup status &lt;pool&gt;</c>. dmsetup's failures are turned into <see cref="KernelPoolError"/>s by
/// the errno text it prints (the kernel's message handler returns -EBUSY for a second reserve,
/// -EINVAL for a release with nothing held, -EOPNOTSUPP in read-only or failed mode).
/// </summary>
public sealed class DmsetupThinPool : IKernelThinPool
{
    public const string DefaultExecutable = "dmsetup";

    private const string InstallHint = "install the dmsetup package (Debian/Ubuntu: apt-get install dmsetup; it comes with lvm2)";

    /// <param name="pool">The pool's device-mapper name (LVM: <c>&lt;vg&gt;-&lt;pool&gt;-tpool</c>).</param>
    /// <param name="executable">dmsetup's path, or a bare name looked up on PATH at each call.</param>
    public DmsetupThinPool(string pool, string executable = DefaultExecutable)
    {
        if (string.IsNullOrWhiteSpace(pool) || pool.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)))
            throw new ArgumentException($"thin pool device name '{pool}' is empty or contains white space", nameof(pool));
        if (string.IsNullOrWhiteSpace(executable))
            throw new ArgumentException("the dmsetup executable is empty", nameof(executable));
        Name = pool;
        Executable = executable;
    }

    public string Name { get; }

    /// <summary>As configured: a path, or a name looked up on PATH.</summary>
    public string Executable { get; }

    public Task ReserveMetadataSnapshotAsync(CancellationToken ct = default) => MessageAsync("reserve_metadata_snap", ct);

    public Task ReleaseMetadataSnapshotAsync(CancellationToken ct = default) => MessageAsync("release_metadata_snap", ct);

    public async Task<ThinPoolStatus> StatusAsync(CancellationToken ct = default)
    {
        string stdout = await RunAsync(["status", Name], message: null, ct).ConfigureAwait(false);
        return ThinPoolStatus.Parse(Name, stdout);
    }

    public Task CreateSnapshotAsync(ulong dev, ulong origin, CancellationToken ct = default)
    {
        CheckDeviceId(dev, nameof(dev));
        CheckDeviceId(origin, nameof(origin));
        if (dev == origin)
            throw new ArgumentException($"a snapshot needs a new device id; {dev} is the origin's", nameof(dev));
        return MessageAsync(string.Create(CultureInfo.InvariantCulture, $"create_snap {dev} {origin}"), ct);
    }

    public Task DeleteAsync(ulong dev, CancellationToken ct = default)
    {
        CheckDeviceId(dev, nameof(dev));
        return MessageAsync(string.Create(CultureInfo.InvariantCulture, $"delete {dev}"), ct);
    }

    /// <summary>
    /// The file <paramref name="executable"/> names: itself if it holds a '/', else the first match in
    /// <paramref name="pathVariable"/> (PATH's syntax). A clear <see cref="KernelPoolError.ToolMissing"/> otherwise.
    /// </summary>
    public static string ResolveExecutable(string executable, string? pathVariable)
    {
        if (executable.Contains('/'))
            return File.Exists(executable)
                ? executable
                : throw new KernelPoolException(KernelPoolError.ToolMissing, $"dmsetup not found at {executable}: {InstallHint}, or fix the configured path");
        foreach (var dir in (pathVariable ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, executable);
            if (File.Exists(candidate))
                return candidate;
        }
        throw new KernelPoolException(KernelPoolError.ToolMissing, $"{executable} not found on PATH ({pathVariable}): {InstallHint}");
    }

    private static void CheckDeviceId(ulong id, string name)
    {
        if (id > ThinMetadata.MaxDeviceId)
            throw new ArgumentOutOfRangeException(name, id, $"thin device id {id} is above the kernel's limit {ThinMetadata.MaxDeviceId} (2^24 - 1)");
    }

    private async Task MessageAsync(string message, CancellationToken ct) =>
        await RunAsync(["message", Name, "0", .. message.Split(' ')], message, ct).ConfigureAwait(false);

    /// <summary>Runs dmsetup and returns its stdout; a non-zero exit becomes a classified error.</summary>
    private async Task<string> RunAsync(string[] args, string? message, CancellationToken ct)
    {
        ct.ThrowIfCancellationRequested();
        string program = ResolveExecutable(Executable, Environment.GetEnvironmentVariable("PATH"));
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
            psi.ArgumentList.Add(a);
        Process p;
        try
        {
            p = Process.Start(psi) ?? throw new KernelPoolException(KernelPoolError.ToolMissing, $"could not start {program}");
        }
        catch (Win32Exception e) when (!File.Exists(program))
        {
            throw new KernelPoolException(KernelPoolError.ToolMissing, $"could not run {program} ({e.Message}): {InstallHint}", e);
        }
        catch (Win32Exception e)
        {
            // The file is there but cannot be executed (not executable, not a program, busy being written).
            throw new KernelPoolException(KernelPoolError.CommandFailed, $"could not run {program}: {e.Message}", e);
        }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync(CancellationToken.None);
            var stderr = p.StandardError.ReadToEndAsync(CancellationToken.None);
            try
            {
                await p.WaitForExitAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                throw;
            }
            string output = await stdout.ConfigureAwait(false);
            string errors = (await stderr.ConfigureAwait(false)).Trim();
            if (p.ExitCode != 0)
                throw Classify(string.Join(' ', args), message, p.ExitCode, errors);
            return output;
        }
    }

    private KernelPoolException Classify(string command, string? message, int exitCode, string stderr)
    {
        string said = $"`dmsetup {command}` exited with {exitCode}: {stderr.ReplaceLineEndings(" / ")}";
        if (stderr.Contains("Permission denied", StringComparison.Ordinal))
            return new(KernelPoolError.PermissionDenied, $"dmsetup needs root to reach the device-mapper driver; {said}");
        if (stderr.Contains("Failure to communicate with kernel device-mapper driver", StringComparison.Ordinal))
            return new(KernelPoolError.DriverMissing, $"the kernel's device-mapper driver is not available (dm_mod not loaded, or no /dev/mapper/control here); {said}");
        if (stderr.Contains("Device does not exist", StringComparison.Ordinal) || stderr.Contains("No such device or address", StringComparison.Ordinal))
            return new(KernelPoolError.DeviceMissing, $"thin pool device {Name} does not exist (with LVM it is <vg>-<pool>-tpool; `dmsetup ls --target thin-pool` lists them); {said}");
        if (stderr.Contains("Operation not supported", StringComparison.Ordinal))
            return new(KernelPoolError.PoolReadOnly, $"thin pool {Name} refuses messages: it is read-only or failed (see its status); {said}");
        if (message == "reserve_metadata_snap" && stderr.Contains("Device or resource busy", StringComparison.Ordinal))
            return new(KernelPoolError.SnapshotAlreadyHeld, $"thin pool {Name} already holds a metadata snapshot; release it first (`dmsetup message {Name} 0 release_metadata_snap`) once nobody reads it; {said}");
        if (message == "release_metadata_snap" && stderr.Contains("Invalid argument", StringComparison.Ordinal))
            return new(KernelPoolError.NoSnapshotHeld, $"thin pool {Name} holds no metadata snapshot to release; {said}");
        return new(KernelPoolError.CommandFailed, said);
    }
}
