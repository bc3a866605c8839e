namespace BackupAppliance.Integration.Tests.Support;

/// <summary>A volume the fixture creates: a thin volume of <paramref name="Size"/>, or a snapshot of <paramref name="SnapshotOf"/>.</summary>
public sealed record VolumeSpec(string Name, long Size, string? SnapshotOf = null)
{
    public static VolumeSpec Snapshot(string name, string of) => new(name, 0, of);
}

/// <summary>What <c>bapp pool create</c> gets and which volumes follow.</summary>
public sealed record PoolSpec(string DataSize, IReadOnlyList<VolumeSpec> Volumes, IReadOnlyList<string>? CreateOptions = null);

/// <summary>
/// The fixture: a pool in a temp folder made with the CLI, served by <c>bapp serve</c> as a child
/// process on a free port. Tests stop it (SIGTERM: commit and exit 0), run pool commands on the
/// folder (one process at a time), and start it again. Disposal stops the server if it still runs
/// and removes the folder, whatever the test did.
/// As a class fixture: derive with a parameterless constructor that passes the layout.
/// </summary>
public class PoolServer : IAsyncLifetime, IAsyncDisposable
{
    private readonly TempDir _dir;
    private readonly PoolSpec _spec;
    private readonly List<string> _logs = new();
    private ServeProcess? _serve;
    private bool _disposed;

    public PoolServer(PoolSpec spec, string purpose)
    {
        _spec = spec;
        _dir = new TempDir(purpose);
        PoolDir = Path.Combine(_dir.Path, "pool");
    }

    /// <summary>Creates, sets up and starts a pool that the caller disposes.</summary>
    public static async Task<PoolServer> StartNewAsync(PoolSpec spec, string purpose)
    {
        var server = new PoolServer(spec, purpose);
        try
        {
            await server.InitializeAsync();
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    public string PoolDir { get; }

    /// <summary>Scratch space beside the pool, removed with it.</summary>
    public TempDir Scratch => _dir;

    public bool IsServing => _serve is { HasExited: false };

    public int Port => _serve?.Port ?? throw new InvalidOperationException("the server is not running");

    public string ListUri => $"nbd://127.0.0.1:{Port}";

    public string Uri(string export) => $"nbd://127.0.0.1:{Port}/{export}";

    /// <summary>stderr of every server run so far, for failure messages.</summary>
    public string ServerLog => string.Join("\n--- restart\n", _logs.Append(_serve?.Log ?? ""));

    public async Task InitializeAsync()
    {
        await Bapp.RunOkAsync(["pool", "create", "--pool", PoolDir, "--data-size", _spec.DataSize, .. _spec.CreateOptions ?? []]);
        foreach (var v in _spec.Volumes)
        {
            if (v.SnapshotOf is { } of)
                await BappOkAsync("vol", "snapshot", of, v.Name);
            else
                await BappOkAsync("vol", "create", v.Name, "--size", v.Size.ToString());
        }
        await SetUpAsync();
        await StartAsync();
    }

    /// <summary>Runs after the volumes exist and before the first start: imports, snapshots of content.</summary>
    protected virtual Task SetUpAsync() => Task.CompletedTask;

    public async Task StartAsync()
    {
        Assert.False(IsServing, "the server is already running");
        if (_serve is not null)
        {
            _logs.Add(_serve.Log);
            await _serve.DisposeAsync();
            _serve = null;
        }
        _serve = await ServeProcess.StartAsync(PoolDir);
    }

    /// <summary>SIGTERM; the server must exit 0 and must not have reported unexpected errors.</summary>
    public async Task StopAsync()
    {
        var serve = _serve ?? throw new InvalidOperationException("the server is not running");
        int code = await serve.StopAsync();
        Assert.True(code == 0, $"bapp serve exited {code} after SIGTERM; stderr:\n{serve.Log}");
        AssertNoUnexpectedErrors();
    }

    public async Task RestartAsync()
    {
        await StopAsync();
        await StartAsync();
    }

    public void AssertNoUnexpectedErrors()
    {
        var errors = _serve?.UnexpectedErrors ?? [];
        Assert.True(errors.Count == 0, $"bapp serve reported unexpected errors:\n{string.Join("\n", errors)}");
    }

    /// <summary>A pool or vol command on this pool (<c>--pool DIR</c> appended). The server must be stopped for commands that open the pool.</summary>
    public Task<ToolResult> BappAsync(params string[] args) => Bapp.RunAsync([.. args, "--pool", PoolDir]);

    public Task<ToolResult> BappOkAsync(params string[] args) => Bapp.RunOkAsync([.. args, "--pool", PoolDir]);

    public Task<PoolStatusJson> StatusAsync() => Bapp.StatusAsync(PoolDir);

    public Task<IReadOnlyList<VolumeJson>> VolumesAsync() => Bapp.VolumesAsync(PoolDir);

    /// <summary>The real thin_check on the pool's metadata file; it must pass. Only while stopped.</summary>
    public async Task<ToolResult> ThinCheckAsync()
    {
        Assert.False(IsServing, "thin_check needs the server stopped (it reads the committed metadata)");
        var r = await Tool.RunAsync("thin_check", Path.Combine(PoolDir, "metadata"));
        Assert.True(r.ExitCode == 0, $"thin_check failed on {PoolDir}/metadata:\n{r}");
        Assert.Contains("TRANSACTION_ID=", r.Stdout);
        return r;
    }

    /// <summary><c>bapp pool check</c> must pass. Only while stopped.</summary>
    public async Task<ToolResult> PoolCheckAsync()
    {
        Assert.False(IsServing, "pool check needs the server stopped");
        var r = await BappAsync("pool", "check");
        Assert.True(r.ExitCode == 0 && r.Stdout.Contains("pool is consistent"), $"bapp pool check failed:\n{r}");
        return r;
    }

    Task IAsyncLifetime.DisposeAsync() => DisposeAsync().AsTask();

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
            return;
        _disposed = true;
        if (_serve is not null)
            await _serve.DisposeAsync();
        await _dir.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}
