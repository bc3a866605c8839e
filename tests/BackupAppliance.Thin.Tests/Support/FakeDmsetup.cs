namespace BackupAppliance.Thin.Tests.Support;

/// <summary>
/// A stand-in for dmsetup (a bash script in a scratch folder) that plays a kernel thin pool over a
/// real metadata file: <c>reserve_metadata_snap</c> runs the shared oracle mksnap.py on the file (the
/// kernel's algorithm, FORMATS.md §5.5), <c>release_metadata_snap</c> puts back the copy taken before,
/// <c>status</c> prints a kernel-format thin-pool line computed from the file's superblock (held root,
/// transaction id, space-map counts, needs_check). A second reserve and a release with nothing held
/// fail with the kernel's errno text; an unknown device name gets dmsetup's own messages. Every call is
/// appended to <see cref="CallLog"/>. Switches (files in the folder): <see cref="AfterReserve"/> (a
/// script run right after a reserve, e.g. the pool changing its live tree), <see cref="StatusOverride"/>
/// (printed instead of the computed line), <see cref="NoDriver"/>, <see cref="MessageError"/>.
/// </summary>
public sealed class FakeDmsetup : IDisposable
{
    public const string Pool = "vg-pool-tpool";

    private readonly TempDir _dir = Tool.TempDir();

    /// <param name="metadata">The metadata file; by default two_devs.xml restored by the real thin_restore into the fake's folder.</param>
    public FakeDmsetup(string? metadata = null)
    {
        metadata ??= TwoDevs(_dir);
        Metadata = metadata;
        string source = _dir.File("dmsetup.src");
        File.WriteAllText(source, Script
            .Replace("@META@", metadata, StringComparison.Ordinal)
            .Replace("@POOL@", Pool, StringComparison.Ordinal)
            .Replace("@ORACLES@", Tool.OracleSamples, StringComparison.Ordinal));
        InstallExecutable(source, Executable);
    }

    /// <summary>The shared sample two_devs.xml (devices 0 and 1, FORMATS.md §10.2) in a 16 MiB file.</summary>
    public static string TwoDevs(TempDir dir)
    {
        string file = dir.Sparse("meta.bin", 16L << 20);
        var r = Tool.Run("thin_restore", "-i", Path.Combine(Tool.OracleSamples, "two_devs.xml"), "-o", file);
        Assert.True(r.ExitCode == 0, $"thin_restore: {r.Stderr}");
        return file;
    }

    /// <summary>The metadata file the fake pool acts on.</summary>
    public string Metadata { get; }

    public string Executable => _dir.File("dmsetup");
    public string Folder => _dir.Path;
    public string AfterReserve => _dir.File("after-reserve");
    public string StatusOverride => _dir.File("status-override");
    public string NoDriver => _dir.File("no-driver");
    public string MessageError => _dir.File("message-error");

    /// <summary>The argument lists of every call so far, one line each.</summary>
    public IReadOnlyList<string> CallLog =>
        File.Exists(_dir.File("calls.log")) ? File.ReadAllLines(_dir.File("calls.log")) : [];

    /// <summary>Installs a bash snippet run (read by bash, not exec'd) after each reserve with $META set to the metadata file.</summary>
    public void OnReserve(string bash) =>
        File.WriteAllText(AfterReserve, "set -e\nMETA='" + Metadata + "'\n" + bash + "\n");

    public static string Status => "status " + Pool;
    public static string Reserve => $"message {Pool} 0 reserve_metadata_snap";
    public static string Release => $"message {Pool} 0 release_metadata_snap";

    /// <summary>
    /// Makes <paramref name="target"/> an executable copy of <paramref name="source"/> written by a child
    /// process (install). Writing it here would leave a window in which another test's process start forks
    /// this process with the file still open for writing; an exec of the script during that window fails
    /// with ETXTBSY ("Text file busy"), which the pool reports as a missing tool.
    /// </summary>
    private static void InstallExecutable(string source, string target)
    {
        if (OperatingSystem.IsWindows())
            throw new PlatformNotSupportedException("the dmsetup stand-in is a bash script");
        var r = Tool.Run("install", "-m", "0700", source, target);
        Assert.True(r.ExitCode == 0, $"install {source} {target}: {r.Stderr}");
    }

    private const string Script = """
        #!/bin/bash
        # Test stand-in for dmsetup: one thin pool over one metadata file.
        here="$(cd "$(dirname "$0")" && pwd)"
        meta='@META@'
        pool='@POOL@'
        oracles='@ORACLES@'
        printf '%s\n' "$*" >> "$here/calls.log"
        fail() { printf '%s\n' "$@" "Command failed." >&2; exit 1; }
        held() { python3 -c 'import struct,sys; f=open(sys.argv[1],"rb"); f.seek(56); print(struct.unpack("<Q",f.read(8))[0])' "$meta"; }
        if [ -e "$here/no-driver" ]; then
          fail "/dev/mapper/control: open failed: No such device" \
               "Failure to communicate with kernel device-mapper driver." \
               "Check that device-mapper is available in the kernel." \
               "Incompatible libdevmapper 1.02.185 (2022-05-18) and kernel driver (unknown version)."
        fi
        case "$1" in
        status)
          [ "$2" = "$pool" ] || fail "Device does not exist."
          if [ -e "$here/status-override" ]; then cat "$here/status-override"; exit 0; fi
          python3 - "$meta" <<'PY'
        import struct, sys
        sb = open(sys.argv[1], 'rb').read(4096)
        flags, = struct.unpack_from('<I', sb, 4)
        trans, held = struct.unpack_from('<QQ', sb, 48)
        dnr, dalloc = struct.unpack_from('<QQ', sb, 64)
        mnr, malloc = struct.unpack_from('<QQ', sb, 192)
        bs, = struct.unpack_from('<I', sb, 336)
        print(f"0 {dnr * bs} thin-pool {trans} {malloc}/{mnr} {dalloc}/{dnr} {held or '-'} rw discard_passdown "
              f"queue_if_no_space {'needs_check' if flags & 1 else '-'} {min(mnr // 4, 4096)}")
        PY
          ;;
        message)
          [ "$2" = "$pool" ] || fail "device-mapper: message ioctl on $2  failed: No such device or address"
          shift 3
          case "$1" in
          reserve_metadata_snap)
            [ "$(held)" = 0 ] || fail "device-mapper: message ioctl on $pool  failed: Device or resource busy"
            cp "$meta" "$here/before-reserve.bin"
            python3 "$oracles/mksnap.py" "$meta" > /dev/null || fail "mksnap.py failed"
            if [ -e "$here/after-reserve" ]; then bash "$here/after-reserve" || fail "after-reserve failed"; fi
            ;;
          release_metadata_snap)
            [ "$(held)" != 0 ] || fail "device-mapper: message ioctl on $pool  failed: Invalid argument"
            cp "$here/before-reserve.bin" "$meta"
            ;;
          create_snap|delete)
            if [ -e "$here/message-error" ]; then fail "$(cat "$here/message-error")"; fi
            ;;
          *)
            fail "device-mapper: message ioctl on $pool  failed: Invalid argument"
            ;;
          esac
          ;;
        *)
          fail "Unknown command $1"
          ;;
        esac
        """;

    public void Dispose() => _dir.Dispose();
}
