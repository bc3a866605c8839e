namespace BackupAppliance.PersistentData;

/// <summary>
/// dm_btree_value_type: how a btree's leaf values are reference counted. <see cref="Inc"/> runs when
/// a shared leaf is copied (both copies now refer to the value); <see cref="Dec"/> when a value is
/// removed, overwritten or its tree deleted.
/// </summary>
public interface IValueType
{
    int Size { get; }
    void Inc(ReadOnlySpan<byte> value);
    void Dec(ReadOnlySpan<byte> value);
    bool Equal(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b);
}

/// <summary>Values that refer to nothing (counts, index entries, array words).</summary>
public sealed class PlainValue : IValueType
{
    public PlainValue(int size) => Size = size;
    public int Size { get; }
    public void Inc(ReadOnlySpan<byte> value) { }
    public void Dec(ReadOnlySpan<byte> value) { }
    public bool Equal(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) => a.SequenceEqual(b);
}
