namespace BackupAppliance.Era.Dump;

/// <summary>
/// The one intermediate representation of era metadata (the tools' era emitter): the dumper drives it
/// from a file, the XML reader from era_dump XML; the XML emitter and the restorer consume it.
/// </summary>
public interface IEraVisitor
{
    void BeginSuperblock(in EraSuperblockInfo superblock);
    void EndSuperblock();
    void BeginWriteset(uint era, uint nrBits);
    void WritesetBit(uint bit, bool value);
    void EndWriteset();
    void BeginEraArray();
    void Era(uint block, uint era);
    void EndEraArray();
}

/// <summary>The superblock fields era_dump prints: uuid, data block size (sectors), nr_blocks, current era.</summary>
public readonly record struct EraSuperblockInfo(string Uuid, uint BlockSize, uint NrBlocks, uint CurrentEra);
