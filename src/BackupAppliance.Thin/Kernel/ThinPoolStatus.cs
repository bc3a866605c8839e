using System.Globalization;

namespace BackupAppliance.Thin.Kernel;

/// <summary>
/// The status of a kernel thin-pool target, as <c>dmsetup status &lt;pool&gt;</c> prints it
/// (dm-thin's pool_status; device-mapper's thin-provisioning documentation, "Status"):
/// <code>
/// 0 &lt;length&gt; thin-pool &lt;transaction id&gt; &lt;used&gt;/&lt;total metadata blocks&gt; &lt;used&gt;/&lt;total data blocks&gt;
///   &lt;held metadata root|-&gt; ro|rw|out_of_data_space [no_]discard_passdown [error|queue]_if_no_space
///   needs_check|- [&lt;metadata low watermark&gt;]
/// </code>
/// Metadata blocks are 4 KiB; data blocks are the pool's block size. The low watermark is printed by
/// kernels from 4.19 on. A failed pool prints only <c>Fail</c>.
/// </summary>
public sealed record ThinPoolStatus(
    ulong TransactionId,
    ulong MetadataUsed,
    ulong MetadataTotal,
    ulong DataUsed,
    ulong DataTotal,
    ulong? HeldRoot,
    KernelPoolMode Mode,
    bool DiscardPassdown,
    bool ErrorIfNoSpace,
    bool NeedsCheck,
    ulong? MetadataLowWatermark)
{
    public const string TargetType = "thin-pool";

    /// <summary>
    /// Parses dmsetup's output for one pool. Strict: anything but one thin-pool line with every field
    /// well-formed is a <see cref="KernelPoolException"/> naming the field, its text and the line.
    /// </summary>
    public static ThinPoolStatus Parse(string pool, string dmsetupOutput)
    {
        var lines = dmsetupOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (lines.Length == 0)
            throw Malformed(pool, "the status is empty (the device has no table loaded?)", dmsetupOutput);
        if (lines.Length > 1)
            throw Malformed(pool, $"the status has {lines.Length} lines (one per target); a thin pool has one target", dmsetupOutput);
        string line = lines[0];
        var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (f.Length < 3)
            throw Malformed(pool, "a status line starts with <start> <length> <target type>", line);
        Number(pool, line, f[0], "start sector");
        Number(pool, line, f[1], "length");
        if (f[2] != TargetType)
            throw new KernelPoolException(KernelPoolError.NotAThinPool,
                $"device {pool} is a '{f[2]}' target, not a thin-pool (with LVM, send messages to <vg>-<pool>-tpool; `dmsetup ls --target thin-pool` lists them)");
        var p = f[3..];
        if (p.Length == 1 && p[0] is "Fail" or "Error")
            throw new KernelPoolException(KernelPoolError.PoolFailed, p[0] == "Fail"
                ? $"thin pool {pool} has failed (status 'Fail'): deactivate it and repair its metadata (thin_check, lvconvert --repair)"
                : $"thin pool {pool} could not report its status ('Error'): its metadata could not be read");
        string[] names =
        [
            "transaction id", "used/total metadata blocks", "used/total data blocks", "held metadata root",
            "mode", "discard passdown", "no-space policy", "needs_check", "metadata low watermark",
        ];
        if (p.Length < names.Length - 1)
            throw Malformed(pool, $"field '{names[p.Length]}' is missing ({p.Length} status fields, at least {names.Length - 1} expected)", line);
        if (p.Length > names.Length)
            throw Malformed(pool, $"{p.Length - names.Length} unexpected field(s) after '{names[^1]}', starting at '{p[names.Length]}'", line);

        ulong trans = Number(pool, line, p[0], names[0]);
        var (mUsed, mTotal) = UsedTotal(pool, line, p[1], names[1]);
        var (dUsed, dTotal) = UsedTotal(pool, line, p[2], names[2]);
        ulong? held = p[3] == "-" ? null : Number(pool, line, p[3], names[3]);
        if (held == 0)
            throw Malformed(pool, $"field '{names[3]}' is 0 (the kernel prints '-' for none; block 0 is the live superblock)", line);
        var mode = p[4] switch
        {
            "rw" => KernelPoolMode.ReadWrite,
            "ro" => KernelPoolMode.ReadOnly,
            "out_of_data_space" => KernelPoolMode.OutOfDataSpace,
            _ => throw Malformed(pool, $"field '{names[4]}' is '{p[4]}', expected rw, ro or out_of_data_space", line),
        };
        bool passdown = Word(pool, line, p[5], names[5], "discard_passdown", "no_discard_passdown");
        bool errorIfNoSpace = Word(pool, line, p[6], names[6], "error_if_no_space", "queue_if_no_space");
        bool needsCheck = Word(pool, line, p[7], names[7], "needs_check", "-");
        ulong? lowWater = p.Length > 8 ? Number(pool, line, p[8], names[8]) : null;
        return new ThinPoolStatus(trans, mUsed, mTotal, dUsed, dTotal, held, mode, passdown, errorIfNoSpace, needsCheck, lowWater);
    }

    /// <summary>The line as the kernel prints it after <c>0 &lt;length&gt; thin-pool</c> (for logs and fakes).</summary>
    public string Format() => string.Join(' ',
        TransactionId.ToString(CultureInfo.InvariantCulture),
        $"{MetadataUsed}/{MetadataTotal}",
        $"{DataUsed}/{DataTotal}",
        HeldRoot?.ToString(CultureInfo.InvariantCulture) ?? "-",
        Mode switch { KernelPoolMode.ReadWrite => "rw", KernelPoolMode.ReadOnly => "ro", _ => "out_of_data_space" },
        DiscardPassdown ? "discard_passdown" : "no_discard_passdown",
        ErrorIfNoSpace ? "error_if_no_space" : "queue_if_no_space",
        NeedsCheck ? "needs_check" : "-")
        + (MetadataLowWatermark is { } w ? " " + w.ToString(CultureInfo.InvariantCulture) : "");

    private static ulong Number(string pool, string line, string text, string field) =>
        ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong v)
            ? v
            : throw Malformed(pool, $"field '{field}' is '{text}', expected a decimal number", line);

    private static (ulong Used, ulong Total) UsedTotal(string pool, string line, string text, string field)
    {
        int slash = text.IndexOf('/');
        if (slash < 0)
            throw Malformed(pool, $"field '{field}' is '{text}', expected <used>/<total>", line);
        ulong used = Number(pool, line, text[..slash], field);
        ulong total = Number(pool, line, text[(slash + 1)..], field);
        if (used > total)
            throw Malformed(pool, $"field '{field}' is '{text}': more used than in total", line);
        return (used, total);
    }

    private static bool Word(string pool, string line, string text, string field, string yes, string no) =>
        text == yes ? true
        : text == no ? false
        : throw Malformed(pool, $"field '{field}' is '{text}', expected {yes} or {no}", line);

    private static KernelPoolException Malformed(string pool, string problem, string line) =>
        new(KernelPoolError.MalformedStatus, $"status of thin pool {pool} is malformed: {problem}; line: '{line.Trim()}'");
}
