using BackupAppliance.PersistentData;

namespace BackupAppliance.Era;

/// <summary>Entries per array block of the two dm-arrays era metadata holds.</summary>
public static class EraLayout
{
    /// <summary>u64 bitset words per array block: 509.</summary>
    public static readonly int WordsPerBitsetBlock = ArrayTree.CalcMaxEntries(sizeof(ulong));

    /// <summary>u32 eras per era-array block: 1018.</summary>
    public static readonly int ErasPerArrayBlock = ArrayTree.CalcMaxEntries(sizeof(uint));
}
