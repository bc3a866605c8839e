namespace BackupAppliance.Nbd;

/// <summary>
/// Every value that crosses the wire, in one place, named after the NBD protocol document
/// (NetworkBlockDevice/nbd doc/proto.md). All fields are big-endian on the wire.
/// </summary>
internal static class NbdConstants
{
    // ---- Handshake: greeting and flags ----

    /// <summary>"NBDMAGIC", the first 8 bytes the server sends.</summary>
    public const ulong NbdMagic = 0x4e42444d41474943;

    /// <summary>"IHAVEOPT": follows <see cref="NbdMagic"/> in the greeting and starts every client option.</summary>
    public const ulong OptionMagic = 0x49484156454f5054;

    /// <summary>Starts every fixed-newstyle option reply.</summary>
    public const ulong OptionReplyMagic = 0x0003e889045565a9;

    /// <summary>Handshake flag NBD_FLAG_FIXED_NEWSTYLE.</summary>
    public const ushort FlagFixedNewstyle = 1 << 0;

    /// <summary>Handshake flag NBD_FLAG_NO_ZEROES.</summary>
    public const ushort FlagNoZeroes = 1 << 1;

    /// <summary>Client flag NBD_FLAG_C_FIXED_NEWSTYLE.</summary>
    public const uint ClientFlagFixedNewstyle = 1 << 0;

    /// <summary>Client flag NBD_FLAG_C_NO_ZEROES.</summary>
    public const uint ClientFlagNoZeroes = 1 << 1;

    /// <summary>Reserved zero bytes after an NBD_OPT_EXPORT_NAME reply unless NO_ZEROES was agreed.</summary>
    public const int ExportNameZeroPadding = 124;

    /// <summary>Strings (export names, queries, messages) MUST NOT be longer than this.</summary>
    public const int MaxStringLength = 4096;

    // ---- Handshake: options (NBD_OPT_*) ----

    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptList = 3;
    public const uint OptStartTls = 5;
    public const uint OptInfo = 6;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;
    public const uint OptListMetaContext = 9;
    public const uint OptSetMetaContext = 10;

    // ---- Handshake: option reply types (NBD_REP_*); errors have bit 31 set ----

    public const uint RepAck = 1;
    public const uint RepServer = 2;
    public const uint RepInfo = 3;
    public const uint RepMetaContext = 4;
    public const uint RepErrUnsup = 0x8000_0001;
    public const uint RepErrPolicy = 0x8000_0002;
    public const uint RepErrInvalid = 0x8000_0003;
    public const uint RepErrPlatform = 0x8000_0004;
    public const uint RepErrTlsReqd = 0x8000_0005;
    public const uint RepErrUnknown = 0x8000_0006;
    public const uint RepErrShutdown = 0x8000_0007;
    public const uint RepErrBlockSizeReqd = 0x8000_0008;
    public const uint RepErrTooBig = 0x8000_0009;

    // ---- Handshake: NBD_REP_INFO types (NBD_INFO_*) ----

    public const ushort InfoExport = 0;
    public const ushort InfoName = 1;
    public const ushort InfoDescription = 2;
    public const ushort InfoBlockSize = 3;

    // ---- Transmission flags (NBD_FLAG_*), sent with the export size ----

    public const ushort TxHasFlags = 1 << 0;
    public const ushort TxReadOnly = 1 << 1;
    public const ushort TxSendFlush = 1 << 2;
    public const ushort TxSendFua = 1 << 3;
    public const ushort TxRotational = 1 << 4;
    public const ushort TxSendTrim = 1 << 5;
    public const ushort TxSendWriteZeroes = 1 << 6;
    public const ushort TxSendDf = 1 << 7;
    public const ushort TxCanMultiConn = 1 << 8;
    public const ushort TxSendCache = 1 << 10;
    public const ushort TxSendFastZero = 1 << 11;

    // ---- Transmission: messages ----

    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;

    /// <summary>magic(4) flags(2) type(2) cookie(8) offset(8) length(4).</summary>
    public const int RequestHeaderLength = 28;

    /// <summary>magic(4) error(4) cookie(8).</summary>
    public const int SimpleReplyHeaderLength = 16;

    /// <summary>magic(4) flags(2) type(2) cookie(8) length(4).</summary>
    public const int StructuredReplyHeaderLength = 20;

    // ---- Transmission: commands (NBD_CMD_*) ----

    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisc = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdTrim = 4;
    public const ushort CmdCache = 5;
    public const ushort CmdWriteZeroes = 6;
    public const ushort CmdBlockStatus = 7;

    // ---- Transmission: command flags (NBD_CMD_FLAG_*) ----

    public const ushort CmdFlagFua = 1 << 0;
    public const ushort CmdFlagNoHole = 1 << 1;
    public const ushort CmdFlagDf = 1 << 2;
    public const ushort CmdFlagReqOne = 1 << 3;
    public const ushort CmdFlagFastZero = 1 << 4;

    // ---- Transmission: structured reply chunks (NBD_REPLY_*) ----

    public const ushort ReplyFlagDone = 1 << 0;
    public const ushort ReplyTypeNone = 0;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeOffsetHole = 2;
    public const ushort ReplyTypeBlockStatus = 5;
    public const ushort ReplyTypeError = 0x8001;
    public const ushort ReplyTypeErrorOffset = 0x8002;

    // ---- Transmission: error values (NBD_E*) ----

    public const uint EPerm = 1;
    public const uint EIo = 5;
    public const uint ENoMem = 12;
    public const uint EInval = 22;
    public const uint ENoSpc = 28;
    public const uint EOverflow = 75;
    public const uint ENotSup = 95;
    public const uint EShutdown = 108;

    // ---- Metadata contexts ----

    /// <summary>The only context served; its flags are <see cref="StateHole"/> and <see cref="StateZero"/>.</summary>
    public const string BaseAllocationContext = "base:allocation";

    /// <summary>The "base:" namespace; as a LIST_META_CONTEXT query it is a wildcard for the namespace.</summary>
    public const string BaseNamespace = "base:";

    /// <summary>The id we give base:allocation in SET_META_CONTEXT replies and BLOCK_STATUS chunks.</summary>
    public const uint BaseAllocationContextId = 1;

    public const uint StateHole = 1 << 0;
    public const uint StateZero = 1 << 1;
}
