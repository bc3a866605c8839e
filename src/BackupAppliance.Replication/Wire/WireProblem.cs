namespace BackupAppliance.Replication.Wire;

/// <summary>What breaks a message's rules, and the error code a receiver answers it with.</summary>
public readonly record struct WireProblem(WireErrorCode Code, string Text)
{
    public override string ToString() => Text;
}
