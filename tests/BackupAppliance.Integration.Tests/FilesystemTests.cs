using BackupAppliance.Integration.Tests.Support;
using Xunit.Abstractions;

namespace BackupAppliance.Integration.Tests;

/// <summary>
/// Acceptance 5: an ext4 filesystem on a volume, through nbdfuse and a loop device. Files written
/// before a server stop read back byte for byte after a restart; thin_check, e2fsck and pool check
/// all pass; the CLI's export of the volume holds the same tree.
/// </summary>
public sealed class FilesystemTests(ITestOutputHelper output)
{
    private const long VolumeSize = 512L << 20;
    private const long DocBudget = 20L << 20;

    [Fact]
    public async Task Ext4_tree_survives_a_server_restart_byte_for_byte()
    {
        await using var pool = await PoolServer.StartNewAsync(new PoolSpec("1G", [new VolumeSpec("fsvol", VolumeSize)]), "fs");
        string fuseDir = pool.Scratch.Sub("fuse"), mnt = pool.Scratch.Sub("mnt");

        // Session 1: format, fill, record every file's sha256.
        SortedDictionary<string, string> written;
        long payload;
        await using (var dev = await NbdBlockDevice.AttachAsync(pool.Uri("fsvol"), fuseDir, VolumeSize, readOnly: false))
        {
            await Tool.RunOkAsync("mkfs.ext4", "-q", dev.Loop);
            await dev.MountAsync(mnt, readOnly: false);
            var (files, bytes) = GenerateTree(Path.Combine(mnt, "generated"), seed: 5150, count: 300);
            var (docFiles, docBytes) = CopyDocs("/usr/share/doc", Path.Combine(mnt, "doc"), DocBudget);
            payload = bytes + docBytes;
            output.WriteLine($"generated {files} files ({bytes} bytes), copied {docFiles} doc files ({docBytes} bytes)");
            Assert.True(docFiles > 50, $"only {docFiles} files copied from /usr/share/doc");
            written = await Sha.TreeAsync(mnt, "lost+found");
            Assert.True(written.Count > files + docFiles, "tree hashing missed entries");
            await dev.DetachAsync(); // umount, losetup -d, fusermount3 -u
        }

        await pool.StopAsync();
        var check = await pool.ThinCheckAsync();
        var status = await pool.StatusAsync();
        // The pool was empty: at least the file contents must now be provisioned (ext4 adds its own metadata).
        Assert.True(status.DataBlocksUsed * (ulong)status.DataBlockSize >= (ulong)payload,
            $"only {status.DataBlocksUsed} data blocks in use after writing {payload} bytes of files");
        Assert.False(status.NeedsCheck);
        output.WriteLine(check.Stdout);

        // Session 2, after a restart: read-only all the way down, every file as written.
        await pool.StartAsync();
        await using (var dev = await NbdBlockDevice.AttachAsync(pool.Uri("fsvol"), fuseDir, VolumeSize, readOnly: true))
        {
            await dev.MountAsync(mnt, readOnly: true);
            var read = await Sha.TreeAsync(mnt, "lost+found");
            Assert.Equal(written.Count, read.Count);
            var differ = written.Where(kv => !read.TryGetValue(kv.Key, out var h) || h != kv.Value).Select(kv => kv.Key).Take(20).ToList();
            Assert.True(differ.Count == 0, $"files differ after the restart: {string.Join(", ", differ)}");
            await dev.UnmountAsync();
            var fsck = await Tool.RunAsync("e2fsck", "-fn", dev.Loop);
            Assert.True(fsck.ExitCode == 0, $"e2fsck -fn is not clean:\n{fsck}");
            await dev.DetachAsync();
        }

        await pool.StopAsync();
        await pool.ThinCheckAsync();
        await pool.PoolCheckAsync();

        // And past every cache on the NBD path: the CLI's export of the volume, mounted from a plain file.
        string image = pool.Scratch.File("fsvol.raw");
        await pool.BappOkAsync("vol", "export", "fsvol", "--to", image);
        await using (await LoopImage.MountReadOnlyAsync(image, pool.Scratch.Sub("image-mnt")))
        {
            var fromImage = await Sha.TreeAsync(Path.Combine(pool.Scratch.Path, "image-mnt"), "lost+found");
            Assert.Equal(written, fromImage);
        }
    }

    /// <summary>
    /// A few hundred files of random content in nested folders: mostly small, some up to 1 MiB,
    /// a few empty or exactly 1 MiB.
    /// </summary>
    private static (int Files, long Bytes) GenerateTree(string root, int seed, int count)
    {
        var rng = new Random(seed);
        long total = 0;
        for (int i = 0; i < count; i++)
        {
            string dir = Path.Combine(root, $"d{rng.Next(8)}", rng.Next(3) == 0 ? $"sub{rng.Next(5)}" : "");
            Directory.CreateDirectory(dir);
            int size = i switch
            {
                0 or 1 => 0,
                2 or 3 => 1 << 20,
                _ => rng.Next(10) switch
                {
                    < 6 => rng.Next(1, 16 << 10),
                    < 9 => rng.Next(16 << 10, 256 << 10),
                    _ => rng.Next(256 << 10, (1 << 20) + 1),
                },
            };
            var data = new byte[size];
            rng.NextBytes(data);
            File.WriteAllBytes(Path.Combine(dir, $"f{i:D3}.bin"), data);
            total += size;
        }
        return (count, total);
    }

    /// <summary>Regular files and symlinks of a real tree, in a stable order, until the byte budget is spent.</summary>
    private static (int Files, long Bytes) CopyDocs(string from, string to, long budget)
    {
        long total = 0;
        int files = 0;
        var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0, IgnoreInaccessible = true };
        foreach (var path in Directory.EnumerateFiles(from, "*", options).Order(StringComparer.Ordinal))
        {
            var info = new FileInfo(path);
            string target = Path.Combine(to, Path.GetRelativePath(from, path));
            if (info.LinkTarget is { } link)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.CreateSymbolicLink(target, link);
                continue;
            }
            if (total + info.Length > budget)
                break;
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(path, target);
            total += info.Length;
            files++;
        }
        return (files, total);
    }
}
