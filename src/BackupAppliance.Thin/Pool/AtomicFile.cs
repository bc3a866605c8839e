using BackupAppliance.Core;

namespace BackupAppliance.Thin.Pool;

/// <summary>Replaces a small file atomically: write a temp file, fsync it, rename over, fsync the folder.</summary>
public static class AtomicFile
{
    public static void Write(string path, ReadOnlySpan<byte> content)
    {
        string tmp = path + ".tmp";
        using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            f.Write(content);
            f.Flush(flushToDisk: true);
        }
        File.Move(tmp, path, overwrite: true);
        FileSync.Directory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }
}
