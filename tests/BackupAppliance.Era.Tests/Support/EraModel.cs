namespace BackupAppliance.Era.Tests.Support;

/// <summary>
/// What an era tracker must answer, kept the obvious way: per block the newest era in which it was
/// marked (committed or archived), plus the marks of the open transaction. Digest never changes it.
/// </summary>
public sealed class EraModel
{
    private readonly uint[] _lastEra;
    private readonly HashSet<uint> _pending = new();

    public EraModel(uint nrBlocks, uint currentEra)
    {
        _lastEra = new uint[nrBlocks];
        CurrentEra = currentEra;
    }

    public uint CurrentEra { get; private set; }
    public uint NrBlocks => (uint)_lastEra.Length;

    public void Mark(uint first, uint end)
    {
        for (uint b = first; b < end; b++)
            _pending.Add(b);
    }

    public void Commit()
    {
        foreach (uint b in _pending)
            _lastEra[b] = CurrentEra;
        _pending.Clear();
    }

    /// <summary>Checkpoint, clean reopen or metadata snapshot: pending marks commit, a new era starts.</summary>
    public void NewEra()
    {
        Commit();
        CurrentEra++;
    }

    /// <summary>A crash: the open transaction is lost; the reopen starts a new era.</summary>
    public void Crash()
    {
        _pending.Clear();
        CurrentEra++;
    }

    public bool IsMarkedCommitted(uint b) => _lastEra[b] == CurrentEra && CurrentEra != 0;

    public List<(uint First, uint End)> WrittenSince(uint era)
    {
        var runs = new List<(uint, uint)>();
        uint b = 0;
        while (b < NrBlocks)
        {
            if (era == 0 || (_lastEra[b] >= era && _lastEra[b] != 0))
            {
                uint s = b;
                while (b < NrBlocks && (era == 0 || (_lastEra[b] >= era && _lastEra[b] != 0)))
                    b++;
                runs.Add((s, b));
            }
            else
            {
                b++;
            }
        }
        return runs;
    }

    public static List<(uint First, uint End)> Runs(EraMetadata md, uint era)
    {
        var runs = new List<(uint, uint)>();
        md.WrittenSince(era, (f, e) => runs.Add((f, e)));
        return runs;
    }
}
