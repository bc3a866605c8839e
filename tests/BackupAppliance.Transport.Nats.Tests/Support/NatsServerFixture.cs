using BackupAppliance.TestSupport;
namespace BackupAppliance.Transport.Nats.Tests.Support;

/// <summary>One plain nats-server shared by the tests of a class that never stop it.</summary>
public sealed class NatsServerFixture : IAsyncLifetime
{
    private NatsServer? _server;

    public NatsServer Server => _server ?? throw new InvalidOperationException("the fixture has not started");

    public async Task InitializeAsync() => _server = await NatsServer.StartAsync();

    public async Task DisposeAsync()
    {
        if (_server is not null)
            await _server.DisposeAsync();
    }
}
