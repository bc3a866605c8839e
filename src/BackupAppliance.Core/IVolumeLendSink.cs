using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.Core;

/// <summary>
/// Takes a volume's bytes by reference (see <see cref="IBlockVolume.TryLendAsync"/>): the pieces
/// of one range, in order. Called while the volume holds those bytes still, so each call must
/// take what it needs before it returns and must not block for long (no network waits).
/// </summary>
public interface IVolumeLendSink
{
    /// <summary><paramref name="length"/> bytes of <paramref name="file"/> at <paramref name="fileOffset"/>.</summary>
    void TakeFile(SafeFileHandle file, long fileOffset, int length);

    /// <summary><paramref name="length"/> bytes that read as zeroes.</summary>
    void TakeZeroes(int length);
}
