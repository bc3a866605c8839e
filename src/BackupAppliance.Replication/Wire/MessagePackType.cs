namespace BackupAppliance.Replication.Wire;

/// <summary>The MessagePack type families (spec "Type system"), as <see cref="MessagePackReader.PeekType"/> reports them.</summary>
public enum MessagePackType
{
    /// <summary>0xc1, which the specification never assigns.</summary>
    Invalid,
    Nil,
    Boolean,
    Integer,
    Float,
    String,
    Binary,
    Array,
    Map,
    Extension,
}
