using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using BackupAppliance.Core;

namespace BackupAppliance.Nbd;

/// <summary>
/// The handshake phase, fixed newstyle only (nbdkit's protocol-handshake-newstyle.c plays this
/// part): greeting, client flags, then option haggling until NBD_OPT_GO or NBD_OPT_EXPORT_NAME
/// enters transmission, or the client aborts or breaks the protocol. Option data is parsed
/// field by field against its declared length; anything malformed is answered with
/// NBD_REP_ERR_INVALID and haggling continues.
/// </summary>
internal sealed class NbdHandshake
{
    /// <summary>Longest option data read; longer is answered NBD_REP_ERR_TOO_BIG and the connection closed.</summary>
    internal const int MaxOptionLength = 64 * 1024;

    private const int OptionHeaderLength = 16;
    private const int ReplyHeaderLength = 20;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Stream _stream;
    private readonly NbdStreamReader _reader;
    private readonly INbdExportProvider _exports;
    private readonly NbdServerOptions _options;

    private bool _noZeroes;
    private bool _structuredReplies;

    /// <summary>Canonical name of the export base:allocation was last selected for, if any.</summary>
    private string? _allocationContextExport;

    public NbdHandshake(Stream stream, NbdStreamReader reader, INbdExportProvider exports, NbdServerOptions options)
    {
        _stream = stream;
        _reader = reader;
        _exports = exports;
        _options = options;
    }

    /// <summary>
    /// Runs the handshake with blocking reads and writes (the connection's own thread); <c>null</c>
    /// means the connection is to be closed.
    /// </summary>
    public NbdSession? Run()
    {
        var greeting = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(greeting, NbdConstants.NbdMagic);
        BinaryPrimitives.WriteUInt64BigEndian(greeting.AsSpan(8), NbdConstants.OptionMagic);
        BinaryPrimitives.WriteUInt16BigEndian(greeting.AsSpan(16), NbdConstants.FlagFixedNewstyle | NbdConstants.FlagNoZeroes);
        _stream.Write(greeting);

        var header = new byte[OptionHeaderLength];
        _reader.ReadExactly(header.AsSpan(0, 4));
        uint clientFlags = BinaryPrimitives.ReadUInt32BigEndian(header);
        const uint known = NbdConstants.ClientFlagFixedNewstyle | NbdConstants.ClientFlagNoZeroes;
        // Unknown client flags MUST close; plain (non-fixed) newstyle clients are not served.
        if ((clientFlags & ~known) != 0 || (clientFlags & NbdConstants.ClientFlagFixedNewstyle) == 0)
            return null;
        _noZeroes = (clientFlags & NbdConstants.ClientFlagNoZeroes) != 0;

        while (true)
        {
            _reader.ReadExactly(header);
            if (BinaryPrimitives.ReadUInt64BigEndian(header) != NbdConstants.OptionMagic)
                return null;
            uint option = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
            if (length > MaxOptionLength)
            {
                // Not worth reading: refuse and hang up (the spec allows a hard disconnect against abuse).
                SendError(option, NbdConstants.RepErrTooBig, "option data too long");
                return null;
            }

            byte[] data = ArrayPool<byte>.Shared.Rent((int)length);
            try
            {
                _reader.ReadExactly(data.AsSpan(0, (int)length));
                var (done, session) = HandleOption(option, data.AsMemory(0, (int)length));
                if (done)
                    return session;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(data);
            }
        }
    }

    private (bool Done, NbdSession? Session) HandleOption(uint option, ReadOnlyMemory<byte> data)
    {
        switch (option)
        {
            case NbdConstants.OptExportName:
                return (true, ExportName(data));

            case NbdConstants.OptAbort:
                // Any data is ignored; the client may already be gone, which ends the connection anyway.
                SendReply(option, NbdConstants.RepAck);
                return (true, null);

            case NbdConstants.OptList:
                List(data);
                return (false, null);

            case NbdConstants.OptInfo:
            case NbdConstants.OptGo:
                var session = InfoOrGo(option, data);
                return (session is not null, session);

            case NbdConstants.OptStructuredReply:
                if (data.Length != 0)
                {
                    SendError(option, NbdConstants.RepErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data");
                    return (false, null);
                }
                _structuredReplies = true;
                SendReply(option, NbdConstants.RepAck);
                return (false, null);

            case NbdConstants.OptListMetaContext:
            case NbdConstants.OptSetMetaContext:
                MetaContext(option, data);
                return (false, null);

            default:
                // NBD_OPT_STARTTLS included: this server runs without TLS.
                SendError(option, NbdConstants.RepErrUnsup, $"option {option} is not supported");
                return (false, null);
        }
    }

    private NbdSession? ExportName(ReadOnlyMemory<byte> data)
    {
        // This option cannot answer with an error: anything wrong terminates the session.
        if (!TryDecode(data.Span, out var name))
            return null;
        var export = Resolve(name);
        if (export is null)
            return null;
        var session = CreateSession(export.Value);

        var reply = new byte[10 + (_noZeroes ? 0 : NbdConstants.ExportNameZeroPadding)];
        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)session.Size);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), session.TransmissionFlags);
        _stream.Write(reply);
        return session;
    }

    private void List(ReadOnlyMemory<byte> data)
    {
        if (data.Length != 0)
        {
            SendError(NbdConstants.OptList, NbdConstants.RepErrInvalid, "NBD_OPT_LIST takes no data");
            return;
        }
        foreach (var export in _exports.List())
        {
            // The text after the name is for humans: the export's description.
            var reply = NewNamedReply(NbdConstants.OptList, NbdConstants.RepServer, (uint)Encoding.UTF8.GetByteCount(export.Name), export.Name, export.Description);
            Send(reply);
        }
        SendReply(NbdConstants.OptList, NbdConstants.RepAck);
    }

    /// <summary>NBD_OPT_INFO and NBD_OPT_GO share their request and replies; GO then enters transmission.</summary>
    private NbdSession? InfoOrGo(uint option, ReadOnlyMemory<byte> data)
    {
        // Data: u32 name length, name, u16 count, count × u16 information requests, nothing more.
        bool wantName = false, wantDescription = false;
        string? name = null;
        var span = data.Span;
        bool valid = span.Length >= 6;
        if (valid)
        {
            uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(span);
            valid = nameLength <= (uint)(span.Length - 6) && TryDecode(span.Slice(4, (int)nameLength), out name);
            if (valid)
            {
                int pos = 4 + (int)nameLength;
                int count = BinaryPrimitives.ReadUInt16BigEndian(span[pos..]);
                pos += 2;
                valid = span.Length - pos == 2 * count;
                for (int i = 0; valid && i < count; i++, pos += 2)
                {
                    switch (BinaryPrimitives.ReadUInt16BigEndian(span[pos..]))
                    {
                        case NbdConstants.InfoName: wantName = true; break;
                        case NbdConstants.InfoDescription: wantDescription = true; break;
                        // NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE are always sent; unknown requests are ignored.
                    }
                }
            }
        }
        if (!valid || name is null)
        {
            SendError(option, NbdConstants.RepErrInvalid, "malformed NBD_OPT_INFO/NBD_OPT_GO data");
            return null;
        }

        var export = Resolve(name);
        if (export is null)
        {
            SendError(option, NbdConstants.RepErrUnknown, $"no export named '{Truncate(name)}'");
            return null;
        }
        var session = CreateSession(export.Value);

        Send(NewExportInfo(option, session));
        if (wantName)
            Send(NewStringInfo(option, NbdConstants.InfoName, session.ExportName));
        if (wantDescription && export.Value.Description.Length > 0)
            Send(NewStringInfo(option, NbdConstants.InfoDescription, export.Value.Description));
        // Sent whether asked or not: clients ignore what they did not ask for.
        var sizes = NewBlockSizeInfo(option, 1, (uint)PreferredBlockSize(session.Volume.BlockSize), (uint)_options.MaxRequestSize);
        Send(sizes);

        SendReply(option, NbdConstants.RepAck);
        return option == NbdConstants.OptGo ? session : null;
    }

    private void MetaContext(uint option, ReadOnlyMemory<byte> data)
    {
        bool set = option == NbdConstants.OptSetMetaContext;
        if (set)
            _allocationContextExport = null; // SET replaces the selection, even when it fails.

        if (!TryParseMetaContextRequest(data.Span, out var exportName, out var queries))
        {
            SendError(option, NbdConstants.RepErrInvalid, "malformed meta context request");
            return;
        }
        if (set && !_structuredReplies)
        {
            SendError(option, NbdConstants.RepErrInvalid, "structured replies must be negotiated first");
            return;
        }
        var export = Resolve(exportName);
        if (export is null)
        {
            SendError(option, NbdConstants.RepErrUnknown, $"no export named '{Truncate(exportName)}'");
            return;
        }

        bool allocation = set
            ? queries.Contains(NbdConstants.BaseAllocationContext)
            : queries.Count == 0 || queries.Exists(q => q is NbdConstants.BaseAllocationContext or NbdConstants.BaseNamespace);
        if (allocation)
        {
            // LIST answers with id 0 (reserved there); SET gives the id BLOCK_STATUS chunks will carry.
            uint id = set ? NbdConstants.BaseAllocationContextId : 0;
            var reply = NewNamedReply(option, NbdConstants.RepMetaContext, id, NbdConstants.BaseAllocationContext, "");
            Send(reply);
            if (set)
                _allocationContextExport = export.Value.Name;
        }
        SendReply(option, NbdConstants.RepAck);
    }

    /// <summary>Data: u32 export name length, name, u32 query count, count × (u32 length, query), nothing more.</summary>
    private static bool TryParseMetaContextRequest(ReadOnlySpan<byte> span, out string exportName, out List<string> queries)
    {
        exportName = "";
        queries = [];
        if (span.Length < 8)
            return false;
        uint nameLength = BinaryPrimitives.ReadUInt32BigEndian(span);
        if (nameLength > (uint)(span.Length - 8) || !TryDecode(span.Slice(4, (int)nameLength), out exportName))
            return false;
        int pos = 4 + (int)nameLength;
        uint count = BinaryPrimitives.ReadUInt32BigEndian(span[pos..]);
        pos += 4;
        for (uint i = 0; i < count; i++)
        {
            if (span.Length - pos < 4)
                return false;
            uint queryLength = BinaryPrimitives.ReadUInt32BigEndian(span[pos..]);
            pos += 4;
            if (queryLength > (uint)(span.Length - pos) || !TryDecode(span.Slice(pos, (int)queryLength), out var query))
                return false;
            pos += (int)queryLength;
            queries.Add(query);
        }
        return pos == span.Length;
    }

    /// <summary>The export a requested name means: the empty name is the first (default) export.</summary>
    private (string Name, string Description, bool ListedReadOnly, IBlockVolume Volume)? Resolve(string requested)
    {
        var list = _exports.List();
        string name = requested;
        if (name.Length == 0)
        {
            if (list.Count == 0)
                return null;
            name = list[0].Name;
        }
        var volume = _exports.Open(name);
        if (volume is null)
            return null;
        NbdExportInfo? info = null;
        foreach (var e in list)
        {
            if (e.Name == name)
            {
                info = e;
                break;
            }
        }
        return (name, info?.Description ?? "", info?.IsReadOnly ?? false, volume);
    }

    private NbdSession CreateSession((string Name, string Description, bool ListedReadOnly, IBlockVolume Volume) export)
    {
        bool readOnly = export.ListedReadOnly || export.Volume.IsReadOnly;
        ushort flags = NbdConstants.TxHasFlags | NbdConstants.TxSendFlush | NbdConstants.TxSendFua | NbdConstants.TxCanMultiConn;
        flags |= readOnly
            ? NbdConstants.TxReadOnly
            : (ushort)(NbdConstants.TxSendTrim | NbdConstants.TxSendWriteZeroes);
        if (_structuredReplies)
            flags |= NbdConstants.TxSendDf; // reads always answer with one data chunk
        bool allocation = _structuredReplies && _allocationContextExport == export.Name;
        return new NbdSession(export.Volume, export.Name, flags, _structuredReplies, allocation);
    }

    /// <summary>A power of two between 512 and the maximum payload, as close to the volume's block size as that allows.</summary>
    private int PreferredBlockSize(int volumeBlockSize)
    {
        uint capped = (uint)Math.Clamp(volumeBlockSize, 512, _options.MaxRequestSize);
        return (int)(1u << BitOperations.Log2(capped));
    }

    private static bool TryDecode(ReadOnlySpan<byte> bytes, out string value)
    {
        value = "";
        if (bytes.Length > NbdConstants.MaxStringLength || bytes.Contains((byte)0))
            return false;
        try
        {
            value = StrictUtf8.GetString(bytes);
            return true;
        }
        catch (DecoderFallbackException)
        {
            return false;
        }
    }

    private static string Truncate(string s) => s.Length <= 64 ? s : s[..64] + "…";

    // ---- replies (rare and small: plain arrays, one write each) ----

    /// <summary>A reply with its header filled in; the payload (at offset 20) is the caller's to fill.</summary>
    private static byte[] NewReply(uint option, uint type, int payloadLength)
    {
        var reply = new byte[ReplyHeaderLength + payloadLength];
        BinaryPrimitives.WriteUInt64BigEndian(reply, NbdConstants.OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), (uint)payloadLength);
        return reply;
    }

    private static Span<byte> Payload(byte[] reply) => reply.AsSpan(ReplyHeaderLength);

    /// <summary>NBD_REP_SERVER / NBD_REP_META_CONTEXT shape: a u32 then the name, then optional text.</summary>
    private static byte[] NewNamedReply(uint option, uint type, uint leading, string name, string trailing)
    {
        int nameLength = Encoding.UTF8.GetByteCount(name);
        var reply = NewReply(option, type, 4 + nameLength + Encoding.UTF8.GetByteCount(trailing));
        var payload = Payload(reply);
        BinaryPrimitives.WriteUInt32BigEndian(payload, leading);
        Encoding.UTF8.GetBytes(name, payload[4..]);
        Encoding.UTF8.GetBytes(trailing, payload[(4 + nameLength)..]);
        return reply;
    }

    private static byte[] NewInfoReply(uint option, ushort infoType, int length)
    {
        var reply = NewReply(option, NbdConstants.RepInfo, 2 + length);
        BinaryPrimitives.WriteUInt16BigEndian(Payload(reply), infoType);
        return reply;
    }

    private static byte[] NewExportInfo(uint option, NbdSession session)
    {
        var reply = NewInfoReply(option, NbdConstants.InfoExport, 10);
        BinaryPrimitives.WriteUInt64BigEndian(Payload(reply)[2..], (ulong)session.Size);
        BinaryPrimitives.WriteUInt16BigEndian(Payload(reply)[10..], session.TransmissionFlags);
        return reply;
    }

    private static byte[] NewStringInfo(uint option, ushort infoType, string value)
    {
        var reply = NewInfoReply(option, infoType, Encoding.UTF8.GetByteCount(value));
        Encoding.UTF8.GetBytes(value, Payload(reply)[2..]);
        return reply;
    }

    private static byte[] NewBlockSizeInfo(uint option, uint minimum, uint preferred, uint maximum)
    {
        var reply = NewInfoReply(option, NbdConstants.InfoBlockSize, 12);
        var p = Payload(reply)[2..];
        BinaryPrimitives.WriteUInt32BigEndian(p, minimum);
        BinaryPrimitives.WriteUInt32BigEndian(p[4..], preferred);
        BinaryPrimitives.WriteUInt32BigEndian(p[8..], maximum);
        return reply;
    }

    private static byte[] NewError(uint option, uint error, string message)
    {
        var reply = NewReply(option, error, Encoding.UTF8.GetByteCount(message));
        Encoding.UTF8.GetBytes(message, Payload(reply));
        return reply;
    }

    private void Send(byte[] reply) => _stream.Write(reply);

    private void SendError(uint option, uint error, string message) => Send(NewError(option, error, message));

    private void SendReply(uint option, uint type) => Send(NewReply(option, type, 0));
}
