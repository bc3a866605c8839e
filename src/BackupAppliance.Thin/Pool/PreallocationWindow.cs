using BackupAppliance.Core;
using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.Thin.Pool;

/// <summary>
/// A bounded run of the data file's blocks, from the latest fresh allocation on, kept preallocated
/// (unwritten extents: nothing written, reading as zeroes) so that new blocks are filled into
/// allocated space: ext4 lets direct writes there run side by side (into a hole each allocates
/// alone), and page-cache writes skip delayed allocation. The data file stays sparse: the free
/// blocks of a window left behind are punched at the next commit (only then is a block free on disk
/// too), and so are the current window's when a hole is punched inside it or the pool closes. At most
/// a window is lost to a crash. Not thread-safe: called under the pool's lock.
/// </summary>
internal sealed class PreallocationWindow(SafeFileHandle data, int blockSize, long windowBytes)
{
    private readonly ulong _blocks = (ulong)Math.Max(1, windowBytes / blockSize);
    private readonly List<(ulong From, ulong To)> _leftBehind = new();
    private ulong _from, _to;

    public bool Contains(ulong block) => block >= _from && block < _to;

    /// <summary>Makes sure <paramref name="block"/> is preallocated, moving the window to start there if it is not in it.</summary>
    public void Cover(ulong block, ulong nrBlocks)
    {
        if (Contains(block))
            return;
        if (_to > _from)
            _leftBehind.Add((_from, _to));
        (_from, _to) = (0, 0);
        ulong end = Math.Min(nrBlocks, block + _blocks);
        if (end > block && FileSync.Preallocate(data, (long)block * blockSize, (long)(end - block) * blockSize))
            (_from, _to) = (block, end);
    }

    /// <summary>
    /// Right after a commit: punches the free blocks of the windows left behind and, with
    /// <paramref name="current"/>, of the current one too (which is then forgotten).
    /// </summary>
    public void ReleaseAfterCommit(bool current, Func<ulong, bool> isFree)
    {
        foreach (var (from, to) in _leftBehind)
            PunchFree(from, to, isFree);
        _leftBehind.Clear();
        if (current)
        {
            PunchFree(_from, _to, isFree);
            (_from, _to) = (0, 0);
        }
    }

    /// <summary>One punch per run of free blocks in [<paramref name="from"/>, <paramref name="to"/>).</summary>
    private void PunchFree(ulong from, ulong to, Func<ulong, bool> isFree)
    {
        ulong runStart = from;
        for (ulong b = from; b <= to; b++)
        {
            if (b < to && isFree(b))
                continue;
            if (b > runStart)
                FileSync.PunchHole(data, (long)runStart * blockSize, (long)(b - runStart) * blockSize);
            runStart = b + 1;
        }
    }
}
