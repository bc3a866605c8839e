using BackupAppliance.Core;
using BackupAppliance.PersistentData;

namespace BackupAppliance.Era;

/// <summary>
/// A strict walk over a whole dm-array, as the tools' visit_values judges one: array blocks 0, 1, 2, …
/// in order with none missing, every block full but the last, exactly the expected number of entries.
/// </summary>
public static class ArrayWalk
{
    /// <param name="what">Names the array in errors ("era array", "writeset of era 3").</param>
    public static void Blocks(ArrayTree array, ulong root, ulong expectedEntries, string what, ArrayBlockVisitor visit)
    {
        ulong next = 0, entries = 0;
        ulong partial = ulong.MaxValue;
        bool stopped = false;
        array.VisitBlockRange(root, 0, ulong.MaxValue, (k, loc, values) =>
        {
            if (k != next)
                throw new CorruptMetadataException(loc, $"{what}: array block {k} found where block {next} was expected (missing blocks)");
            if (partial != ulong.MaxValue)
                throw new CorruptMetadataException(partial, $"{what}: array block {k - 1} is not full but is not the last");
            int nr = values.Length / array.ValueSize;
            if (nr == 0)
                throw new CorruptMetadataException(loc, $"{what}: array block {k} holds no entries");
            if (nr < array.EntriesPerBlock)
                partial = loc;
            entries += (ulong)nr;
            next++;
            stopped = !visit(k, loc, values);
            return !stopped;
        });
        if (!stopped && entries != expectedEntries)
            throw new CorruptMetadataException(root, $"{what} holds {entries} entries, expected {expectedEntries} (missing blocks)");
    }
}
