namespace BackupAppliance.Transport.Nats;

/// <summary>A <see cref="NatsTransportOptions"/> value is wrong; <see cref="ArgumentException.ParamName"/> is the option.</summary>
public sealed class NatsOptionsException : ArgumentException
{
    public NatsOptionsException(string option, string problem)
        : base($"NATS option {option}: {problem}", option)
    {
    }
}
