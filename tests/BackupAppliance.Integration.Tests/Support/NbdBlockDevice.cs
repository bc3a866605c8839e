using System.Diagnostics;
using System.Text;

namespace BackupAppliance.Integration.Tests.Support;

/// <summary>
/// An export as a kernel block device without the nbd module: <c>nbdfuse FUSEDIR/nbd URI</c>
/// presents the export as a file, <c>losetup</c> turns that file into /dev/loopN, which can be
/// formatted and mounted. <see cref="DetachAsync"/> takes it apart in order and checks each step;
/// <see cref="DisposeAsync"/> tears down whatever is left (lazy unmounts, detach, our nbdfuse
/// process by id) even when a test failed half way.
/// </summary>
public sealed class NbdBlockDevice : IAsyncDisposable
{
    private static readonly TimeSpan AppearTimeout = TimeSpan.FromSeconds(20);

    private readonly Process _nbdfuse;
    private readonly StringBuilder _nbdfuseLog;
    private readonly string _fuseDir;
    private string? _loop;
    private string? _mountedAt;

    private NbdBlockDevice(Process nbdfuse, StringBuilder log, string fuseDir)
    {
        _nbdfuse = nbdfuse;
        _nbdfuseLog = log;
        _fuseDir = fuseDir;
    }

    /// <summary>/dev/loopN backed by the export.</summary>
    public string Loop => _loop ?? throw new InvalidOperationException("no loop device");

    public string FuseFile => Path.Combine(_fuseDir, "nbd");

    /// <summary>Starts nbdfuse in the background, waits for its file, and attaches a loop device to it.</summary>
    public static async Task<NbdBlockDevice> AttachAsync(string uri, string fuseDir, long expectedSize, bool readOnly)
    {
        Directory.CreateDirectory(fuseDir);
        Assert.False(Mounts.IsMounted(fuseDir), $"{fuseDir} is already mounted");
        var psi = new ProcessStartInfo("nbdfuse") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (readOnly)
            psi.ArgumentList.Add("--readonly");
        psi.ArgumentList.Add(Path.Combine(fuseDir, "nbd"));
        psi.ArgumentList.Add(uri);
        Process p;
        try
        {
            p = Process.Start(psi) ?? throw new InvalidOperationException("could not start nbdfuse");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"'nbdfuse' is required by the integration tests and could not be started: {e.Message}", e);
        }
        var log = new StringBuilder();
        DataReceivedEventHandler append = (_, e) =>
        {
            if (e.Data is not null)
                lock (log)
                    log.AppendLine(e.Data);
        };
        p.OutputDataReceived += append;
        p.ErrorDataReceived += append;
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        var device = new NbdBlockDevice(p, log, fuseDir);
        try
        {
            var clock = Stopwatch.StartNew();
            while (!(Mounts.IsMounted(fuseDir) && File.Exists(device.FuseFile)))
            {
                Assert.False(p.HasExited, $"nbdfuse exited ({(p.HasExited ? p.ExitCode : 0)}) before its file appeared:\n{device.NbdfuseLog}");
                Assert.True(clock.Elapsed < AppearTimeout, $"{device.FuseFile} did not appear within {AppearTimeout.TotalSeconds} s:\n{device.NbdfuseLog}");
                await Task.Delay(50);
            }
            Assert.Equal(expectedSize, new FileInfo(device.FuseFile).Length);
            var losetup = readOnly
                ? await Tool.RunOkAsync("losetup", "--read-only", "--find", "--show", device.FuseFile)
                : await Tool.RunOkAsync("losetup", "--find", "--show", device.FuseFile);
            string loop = losetup.Stdout.Trim();
            Assert.StartsWith("/dev/loop", loop);
            device._loop = loop;
            return device;
        }
        catch
        {
            await device.DisposeAsync();
            throw;
        }
    }

    public string NbdfuseLog
    {
        get { lock (_nbdfuseLog) return _nbdfuseLog.ToString(); }
    }

    public async Task MountAsync(string dir, bool readOnly)
    {
        Directory.CreateDirectory(dir);
        if (readOnly)
            await Tool.RunOkAsync("mount", "-t", "ext4", "-o", "ro", Loop, dir);
        else
            await Tool.RunOkAsync("mount", "-t", "ext4", Loop, dir);
        _mountedAt = dir;
        Assert.True(Mounts.IsMounted(dir), $"{dir} is not mounted after mount");
    }

    public async Task UnmountAsync()
    {
        string dir = _mountedAt ?? throw new InvalidOperationException("not mounted");
        await Tool.RunOkAsync("umount", dir);
        _mountedAt = null;
        Assert.False(Mounts.IsMounted(dir), $"{dir} is still mounted after umount");
    }

    /// <summary>Detaches the loop device, unmounts nbdfuse (it then exits) — each step must succeed.</summary>
    public async Task DetachAsync()
    {
        if (_mountedAt is not null)
            await UnmountAsync();
        if (_loop is not null)
        {
            await Tool.RunOkAsync("losetup", "--detach", _loop);
            _loop = null;
        }
        // The kernel may hold the FUSE file a moment after the loop device goes: retry while busy.
        ToolResult? last = null;
        for (int i = 0; i < 50 && Mounts.IsMounted(_fuseDir); i++)
        {
            last = await Tool.RunAsync("fusermount3", "-u", _fuseDir);
            if (last.ExitCode != 0)
                await Task.Delay(100);
        }
        Assert.False(Mounts.IsMounted(_fuseDir), $"fusermount3 -u {_fuseDir} did not unmount:\n{last}");
        Assert.True(await Processes.WaitForExitAsync(_nbdfuse, TimeSpan.FromSeconds(20)), $"nbdfuse did not exit after its unmount:\n{NbdfuseLog}");
        await _nbdfuse.WaitForExitAsync();
        Assert.True(_nbdfuse.ExitCode == 0, $"nbdfuse exited {_nbdfuse.ExitCode}:\n{NbdfuseLog}");
    }

    public async ValueTask DisposeAsync()
    {
        if (_mountedAt is not null && Mounts.IsMounted(_mountedAt))
            await Tool.TryRunAsync("umount", "-l", _mountedAt);
        if (_loop is not null)
            await Tool.TryRunAsync("losetup", "--detach", _loop);
        if (Mounts.IsMounted(_fuseDir))
            await Tool.TryRunAsync("fusermount3", "-u", "-z", _fuseDir);
        if (!await Processes.WaitForExitAsync(_nbdfuse, TimeSpan.FromSeconds(5)))
            Processes.KillTree(_nbdfuse);
        await Processes.WaitForExitAsync(_nbdfuse, TimeSpan.FromSeconds(5));
        _nbdfuse.Dispose();
    }
}
