using System.Text.Json.Serialization;

namespace BackupAppliance.Agent;

/// <summary>
/// The agent configuration's JSON contract, generated at build time (no reflection at start-up).
/// Options with a default are <c>set</c>, not <c>init</c>: generated code would give an absent
/// <c>init</c> option its type's default instead of ours.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(AgentConfig))]
internal sealed partial class AgentConfigJson : JsonSerializerContext;
