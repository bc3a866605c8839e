using System.Text.Json;
using System.Text.Json.Serialization;

namespace BackupAppliance.Hosting;

/// <summary>
/// Reads a daemon's JSON configuration: snake_case option names, <c>//</c> comments and trailing
/// commas allowed, unknown options refused (a typo must not silently fall back to a default).
/// Every error names the file and the option.
/// </summary>
public static class ConfigFile
{
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectNullableAnnotations = true,
        RespectRequiredConstructorParameters = true,
    };

    /// <summary>Loads <paramref name="path"/> as <typeparamref name="T"/>, then runs its validation.</summary>
    public static T Load<T>(string path) where T : class, IValidatedConfig
    {
        string text;
        try
        {
            text = System.IO.File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException(path, $"cannot be read: {e.Message}", e);
        }
        T? config;
        try
        {
            config = JsonSerializer.Deserialize<T>(text, Json);
        }
        catch (JsonException e)
        {
            string option = OptionName(e.Path);
            string problem = e.Message.Split(" Path:", 2)[0];
            if (option.Length == 0)
                throw new ConfigException(path, $"is not valid JSON: {problem}", e);
            throw new ConfigException(path, option, problem, e);
        }
        if (config is null)
            throw new ConfigException(path, "is empty (null); it must be one JSON object");
        config.Validate(path);
        return config;
    }

    /// <summary>Serialises a configuration the way <see cref="Load{T}"/> reads it.</summary>
    public static string Format<T>(T config) => JsonSerializer.Serialize(config, new JsonSerializerOptions(Json) { WriteIndented = true });

    // "$.nats.url" → "nats.url"; "$.volumes[1].name" → "volumes[1].name"
    private static string OptionName(string? jsonPath) =>
        string.IsNullOrEmpty(jsonPath) || jsonPath == "$" ? "" : jsonPath.TrimStart('$').TrimStart('.');
}

/// <summary>A configuration that checks itself after loading and throws <see cref="ConfigException"/> naming the option.</summary>
public interface IValidatedConfig
{
    void Validate(string file);
}
