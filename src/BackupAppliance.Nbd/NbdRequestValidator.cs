namespace BackupAppliance.Nbd;

/// <summary>What the transmission loop does with a request.</summary>
internal enum NbdRequestAction
{
    /// <summary>Valid: hand it to the volume.</summary>
    Execute,
    /// <summary>Invalid but the stream is intact: answer with <see cref="NbdRequestCheck.Error"/>, touch nothing.</summary>
    Refuse,
    /// <summary>NBD_CMD_DISC: finish what is in flight, then close.</summary>
    Disconnect,
    /// <summary>A protocol violation the stream cannot survive (bad magic, oversized payload): close.</summary>
    Close,
}

internal readonly record struct NbdRequestCheck(NbdRequestAction Action, uint Error = 0, string? Reason = null)
{
    public static readonly NbdRequestCheck Execute = new(NbdRequestAction.Execute);

    public static NbdRequestCheck Refuse(uint error, string reason) => new(NbdRequestAction.Refuse, error, reason);
}

/// <summary>
/// The one place a request is judged, before anything acts on it: magic, command, flags,
/// permission and range. Past this check the volume sees only in-range offsets and lengths.
/// </summary>
internal static class NbdRequestValidator
{
    public static NbdRequestCheck Check(in NbdRequest request, NbdSession session, int maxRequestSize)
    {
        if (request.Magic != NbdConstants.RequestMagic)
            return new(NbdRequestAction.Close, Reason: $"bad request magic 0x{request.Magic:x8}");

        ushort allowedFlags;
        bool writes = false, ranged = true;
        switch (request.Type)
        {
            case NbdConstants.CmdDisc:
                return new(NbdRequestAction.Disconnect);
            case NbdConstants.CmdRead:
            case NbdConstants.CmdWrite:
                // The payload is the client's to size; past the advertised maximum the stream is not
                // worth keeping in sync (a WRITE's payload is not even read).
                if (request.Length > maxRequestSize)
                    return new(NbdRequestAction.Close, Reason: $"payload of {request.Length} bytes exceeds the maximum of {maxRequestSize}");
                writes = request.Type == NbdConstants.CmdWrite;
                allowedFlags = writes || !session.StructuredReplies
                    ? NbdConstants.CmdFlagFua
                    : (ushort)(NbdConstants.CmdFlagFua | NbdConstants.CmdFlagDf);
                break;
            case NbdConstants.CmdFlush:
                allowedFlags = NbdConstants.CmdFlagFua;
                ranged = false;
                break;
            case NbdConstants.CmdTrim:
                allowedFlags = NbdConstants.CmdFlagFua;
                writes = true;
                break;
            case NbdConstants.CmdWriteZeroes:
                allowedFlags = NbdConstants.CmdFlagFua | NbdConstants.CmdFlagNoHole;
                writes = true;
                break;
            case NbdConstants.CmdBlockStatus:
                if (!session.AllocationContext)
                    return NbdRequestCheck.Refuse(NbdConstants.EInval, "no metadata context was negotiated");
                allowedFlags = NbdConstants.CmdFlagFua | NbdConstants.CmdFlagReqOne;
                break;
            default:
                return NbdRequestCheck.Refuse(NbdConstants.EInval, $"unknown command {request.Type}");
        }

        if ((request.Flags & ~allowedFlags) != 0)
            return NbdRequestCheck.Refuse(NbdConstants.EInval, $"flags 0x{request.Flags:x4} are not valid for command {request.Type}");
        if (writes && session.IsReadOnly)
            return NbdRequestCheck.Refuse(NbdConstants.EPerm, "export is read-only");

        if (!ranged)
        {
            if (request.Offset != 0 || request.Length != 0)
                return NbdRequestCheck.Refuse(NbdConstants.EInval, "offset and length of a flush must be zero");
            return NbdRequestCheck.Execute;
        }

        ulong size = (ulong)session.Size;
        if (request.Length == 0)
            return NbdRequestCheck.Refuse(NbdConstants.EInval, "zero-length request");
        if (request.Offset > size || request.Length > size - request.Offset)
        {
            // The protocol asks for ENOSPC when a write would run past the end, EINVAL otherwise.
            uint error = request.Type is NbdConstants.CmdWrite or NbdConstants.CmdWriteZeroes ? NbdConstants.ENoSpc : NbdConstants.EInval;
            return NbdRequestCheck.Refuse(error, $"range {request.Offset}+{request.Length} is outside the export ({size} bytes)");
        }
        return NbdRequestCheck.Execute;
    }
}
