using System.Security.Cryptography;

namespace BackupAppliance.Integration.Tests.Support;

/// <summary>sha256 of bytes, files and whole directory trees.</summary>
public static class Sha
{
    public static string Of(ReadOnlySpan<byte> data) => Convert.ToHexString(SHA256.HashData(data));

    public static async Task<string> FileAsync(string path)
    {
        await using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return Convert.ToHexString(await SHA256.HashDataAsync(f));
    }

    /// <summary>
    /// Every entry below <paramref name="root"/> by relative path: a regular file maps to its
    /// sha256, a directory to "dir", a symlink to "-> target". Top-level names in
    /// <paramref name="ignore"/> are left out (e.g. lost+found).
    /// </summary>
    public static async Task<SortedDictionary<string, string>> TreeAsync(string root, params string[] ignore)
    {
        var result = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var options = new EnumerationOptions { RecurseSubdirectories = false, AttributesToSkip = 0, ReturnSpecialDirectories = false };
        var pending = new Stack<string>();
        pending.Push(root);
        while (pending.Count > 0)
        {
            string dir = pending.Pop();
            foreach (var entry in new DirectoryInfo(dir).EnumerateFileSystemInfos("*", options))
            {
                string rel = Path.GetRelativePath(root, entry.FullName);
                if (dir == root && ignore.Contains(entry.Name))
                    continue;
                if (entry.LinkTarget is { } target)
                    result[rel] = "-> " + target;
                else if (entry is DirectoryInfo)
                {
                    result[rel] = "dir";
                    pending.Push(entry.FullName);
                }
                else
                    result[rel] = await FileAsync(entry.FullName);
            }
        }
        return result;
    }
}
