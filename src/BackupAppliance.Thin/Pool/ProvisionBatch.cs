using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.Thin.Pool;

/// <summary>
/// The new data blocks of one write, from allocation to mapping (dm-thin's prepared mappings): see
/// <see cref="BlockPrison"/>. <see cref="Generation"/> is the pool's transaction generation at
/// allocation; if the transaction was aborted meanwhile, the blocks no longer exist and are not mapped.
/// </summary>
internal sealed class ProvisionBatch(ulong deviceId, long generation, bool streaming)
{
    public ulong DeviceId { get; } = deviceId;
    public long Generation { get; } = generation;
    /// <summary>A streaming write's: new blocks it covers whole go past the page cache.</summary>
    public bool Streaming { get; } = streaming;
    public List<NewBlock> Blocks { get; } = [];

    /// <summary>Completed when the batch's blocks are mapped (or given up); writes waiting for them go on.</summary>
    public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>
/// Data block <see cref="DataBlock"/>, new for virtual block <see cref="VBlock"/>: the write covers
/// <see cref="Length"/> bytes from <see cref="InBlock"/> (taken from the write's data at
/// <see cref="DataOffset"/>); the rest of the block comes from <see cref="SharedBlock"/> (breaking
/// sharing), else from <see cref="Origin"/> (an external origin), else reads as zeroes.
/// </summary>
internal readonly record struct NewBlock(ulong VBlock, ulong DataBlock, int InBlock, int Length, int DataOffset, ulong? SharedBlock, SafeFileHandle? Origin);
