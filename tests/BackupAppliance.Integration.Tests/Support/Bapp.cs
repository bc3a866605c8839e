using System.Text.Json;

namespace BackupAppliance.Integration.Tests.Support;

/// <summary>The CLI as users run it: <c>dotnet bapp.dll ...</c>, copied next to the tests by the project reference.</summary>
public static class Bapp
{
    public static string Dll
    {
        get
        {
            string dll = Path.Combine(AppContext.BaseDirectory, "bapp.dll");
            Assert.True(File.Exists(dll), $"bapp.dll not found next to the tests ({dll})");
            return dll;
        }
    }

    public static Task<ToolResult> RunAsync(params string[] args) => Tool.RunAsync("dotnet", [Dll, .. args]);

    public static async Task<ToolResult> RunOkAsync(params string[] args)
    {
        var r = await RunAsync(args);
        Assert.True(r.ExitCode == 0, $"bapp failed:\n{r}");
        return r;
    }

    /// <summary><c>bapp pool status --json</c>, parsed.</summary>
    public static async Task<PoolStatusJson> StatusAsync(string pool)
    {
        var r = await RunOkAsync("pool", "status", "--pool", pool, "--json");
        return JsonSerializer.Deserialize<PoolStatusJson>(r.Stdout, JsonOptions) ?? throw new InvalidDataException($"no status in\n{r}");
    }

    /// <summary><c>bapp vol list --json</c>, parsed.</summary>
    public static async Task<IReadOnlyList<VolumeJson>> VolumesAsync(string pool)
    {
        var r = await RunOkAsync("vol", "list", "--pool", pool, "--json");
        return JsonSerializer.Deserialize<List<VolumeJson>>(r.Stdout, JsonOptions) ?? throw new InvalidDataException($"no list in\n{r}");
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { PropertyNameCaseInsensitive = false, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };
}

public sealed record PoolStatusJson(string Mode, bool NeedsCheck, ulong TransactionId, int DataBlockSize, ulong DataBlocksUsed, ulong DataBlocksTotal,
    ulong MetadataBlocksUsed, ulong MetadataBlocksTotal, string? ReadOnlyReason, int Volumes);

public sealed record VolumeJson(string Name, ulong DeviceId, long Size, bool ReadOnly, string? SnapshotOf, string? Origin, long MappedBytes);
