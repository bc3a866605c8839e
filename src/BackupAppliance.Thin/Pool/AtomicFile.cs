using BackupAppliance.Core;

namespace BackupAppliance.Thin.Pool;

/// <summary>Replaces a file atomically: write a temp file, fsync it, rename over, fsync the folder.</summary>
public static class AtomicFile
{
    /// <summary>
    /// Lets <paramref name="write"/> write and fsync the file <c>&lt;path&gt;&lt;suffix&gt;</c>, then
    /// renames it to <paramref name="path"/> and syncs the folder; on failure the partial file is
    /// removed. For files written in pieces (images, tables); <see cref="Write"/> for small ones.
    /// </summary>
    public static async ValueTask WriteAsync(string path, string suffix, bool overwrite, Func<string, ValueTask> write)
    {
        string partial = path + suffix;
        try
        {
            await write(partial).ConfigureAwait(false);
            Rename(partial, path, overwrite);
        }
        catch
        {
            File.Delete(partial);
            throw;
        }
    }

    public static void Write(string path, ReadOnlySpan<byte> content)
    {
        string tmp = path + ".tmp";
        using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            f.Write(content);
            f.Flush(flushToDisk: true);
        }
        Rename(tmp, path, overwrite: true);
    }

    /// <summary>Gives the written, synced file its name, durably (the folder is synced too).</summary>
    private static void Rename(string written, string path, bool overwrite)
    {
        File.Move(written, path, overwrite);
        FileSync.Directory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }
}
