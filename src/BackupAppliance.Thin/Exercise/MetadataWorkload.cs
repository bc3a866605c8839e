namespace BackupAppliance.Thin.Exercise;

/// <summary>
/// A deterministic, seeded stream of metadata operations (create, snapshot, map, unmap, delete,
/// commit). The crash campaign runs it in a child process that is killed at random; the test replays
/// the same seed in-process to know what each committed transaction must contain.
/// </summary>
public sealed class MetadataWorkload
{
    private readonly Random _rng;
    private readonly List<ulong> _devices = new();
    private ulong _nextId;

    public MetadataWorkload(int seed) => _rng = new Random(seed);

    /// <summary>Runs one transaction's worth of operations, then commits. Returns the new transaction id.</summary>
    public ulong Step(ThinMetadata md)
    {
        int ops = _rng.Next(1, 400);
        for (int i = 0; i < ops; i++)
        {
            int roll = _rng.Next(100);
            if (_devices.Count == 0 || (roll < 3 && _devices.Count < 8))
            {
                md.CreateThin(_nextId);
                _devices.Add(_nextId++);
            }
            else if (roll < 5 && _devices.Count < 8)
            {
                ulong origin = _devices[_rng.Next(_devices.Count)];
                md.CreateSnapshot(_nextId, origin);
                _devices.Add(_nextId++);
            }
            else if (roll < 6 && _devices.Count > 2)
            {
                int k = _rng.Next(_devices.Count);
                md.DeleteDevice(_devices[k]);
                _devices.RemoveAt(k);
            }
            else if (roll < 25)
            {
                md.Remove(_devices[_rng.Next(_devices.Count)], (ulong)_rng.Next(20_000));
            }
            else if (md.DataBlocksUsed < md.NrDataBlocks - 1)
            {
                ulong dev = _devices[_rng.Next(_devices.Count)];
                ulong v = (ulong)_rng.Next(20_000);
                int run = _rng.Next(1, 64);
                for (int j = 0; j < run && md.DataBlocksUsed < md.NrDataBlocks - 1; j++)
                    md.Insert(dev, v + (ulong)j, md.AllocateDataBlock());
            }
        }
        md.SetTransactionId(md.TransactionId, md.TransactionId + 1);
        md.Commit();
        return md.TransactionId;
    }
}
