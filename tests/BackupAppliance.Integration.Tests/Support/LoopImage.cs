namespace BackupAppliance.Integration.Tests.Support;

/// <summary>A raw image file on a read-only loop device, mounted read-only; torn down on dispose even after a failure.</summary>
public sealed class LoopImage : IAsyncDisposable
{
    private string? _loop;
    private string? _mountedAt;

    private LoopImage()
    {
    }

    public static async Task<LoopImage> MountReadOnlyAsync(string image, string dir)
    {
        var li = new LoopImage();
        try
        {
            var r = await Tool.RunOkAsync("losetup", "--read-only", "--find", "--show", image);
            li._loop = r.Stdout.Trim();
            Assert.StartsWith("/dev/loop", li._loop);
            Directory.CreateDirectory(dir);
            await Tool.RunOkAsync("mount", "-t", "ext4", "-o", "ro", li._loop, dir);
            li._mountedAt = dir;
            return li;
        }
        catch
        {
            await li.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_mountedAt is not null && Mounts.IsMounted(_mountedAt))
        {
            var r = await Tool.TryRunAsync("umount", _mountedAt);
            if (r is not { ExitCode: 0 })
                await Tool.TryRunAsync("umount", "-l", _mountedAt);
        }
        _mountedAt = null;
        if (_loop is not null)
            await Tool.TryRunAsync("losetup", "--detach", _loop);
        _loop = null;
    }
}
