using System.Diagnostics;
using System.Text.RegularExpressions;

namespace BackupAppliance.Transport.Nats.Tests.Support;

/// <summary>
/// The kernel's view of the client sockets connected to a port, from <c>ss -tmn</c> (iproute2):
/// an oracle for the socket tuning that does not go through our own reflection.
/// </summary>
public static partial class SocketStats
{
    public sealed record Buffers(string Local, int ReceiveBuffer, int SendBuffer);

    public static async Task<IReadOnlyList<Buffers>> ClientsOfPortAsync(int port)
    {
        var psi = new ProcessStartInfo("ss", ["-tmnH", "state", "established", $"( dport = :{port} )"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        using var p = Process.Start(psi) ?? throw new InvalidOperationException("could not run ss");
        string output = await p.StandardOutput.ReadToEndAsync();
        string error = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"ss failed ({p.ExitCode}): {error}");
        var found = new List<Buffers>();
        string? local = null;
        foreach (var line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var m = Memory().Match(line);
            if (!m.Success)
            {
                var cols = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                local = cols.Length >= 3 ? cols[2] : line;
                // ss may print the skmem on the same line as the addresses.
                if (!line.Contains("skmem"))
                    continue;
                m = Memory().Match(line);
            }
            if (m.Success)
                found.Add(new Buffers(local ?? "?", int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value)));
        }
        return found;
    }

    [GeneratedRegex(@"skmem:\(r\d+,rb(\d+),t\d+,tb(\d+)")]
    private static partial Regex Memory();
}
