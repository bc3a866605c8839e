namespace BackupAppliance.Replication.Transport;

/// <summary>
/// A transport could not do what was asked: connecting (unreachable servers, authentication, TLS),
/// or an operation on a closed connection. The message says which and why.
/// </summary>
public sealed class TransportException : Exception
{
    public TransportException(string message)
        : base(message)
    {
    }

    public TransportException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
