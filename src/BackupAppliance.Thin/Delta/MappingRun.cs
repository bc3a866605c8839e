using BackupAppliance.PersistentData;

namespace BackupAppliance.Thin.Delta;

/// <summary>A maximal run of mappings whose virtual and data blocks both advance by one (time ignored).</summary>
public readonly record struct MappingRun(ulong VBegin, ulong DBegin, ulong Length);

public static class MappingRuns
{
    /// <summary>thin_delta's run list of one device.</summary>
    public static List<MappingRun> Of(ThinReader reader, ulong root)
    {
        var runs = new List<MappingRun>();
        ulong vb = 0, db = 0, len = 0;
        reader.VisitMappings(root, leaf =>
        {
            int nr = leaf.NrEntries;
            for (int i = 0; i < nr; i++)
            {
                ulong v = leaf.Key(i);
                ulong d = leaf.Value64(i) >> 24;
                if (len > 0 && v == vb + len && d == db + len)
                {
                    len++;
                    continue;
                }
                if (len > 0)
                    runs.Add(new MappingRun(vb, db, len));
                vb = v;
                db = d;
                len = 1;
            }
        });
        if (len > 0)
            runs.Add(new MappingRun(vb, db, len));
        return runs;
    }
}
