using System.Net.Sockets;
using System.Runtime.InteropServices;
using BackupAppliance.Core;
using Microsoft.Win32.SafeHandles;

namespace BackupAppliance.Nbd;

/// <summary>
/// A kernel pipe that a read reply's data passes through on its way to a TCP socket without being
/// copied by the server: a volume lends the pieces of the range into it (<see cref="IVolumeLendSink"/>:
/// a file's page-cache pages by reference, through splice(2); zeroes written), then
/// <see cref="SendTo"/> sends the reply header and splices the pipe into the socket. Filling never
/// blocks (both ends are non-blocking): a piece the pipe has no room for fails the fill with
/// <see cref="PipeFullException"/>, and the caller clears the pipe and copies instead. One reply at a
/// time: a connection takes the pipe for a whole reply.
/// </summary>
internal sealed partial class SplicePipe : IVolumeLendSink, IDisposable
{
    /// <summary>The capacity asked for: one 1 MiB read (the unprivileged ceiling of pipe sizes by default).</summary>
    public const int WantedCapacity = 1 << 20;

    private const int PageSize = 4096;
    private const int ONonblock = 0x800, OCloexec = 0x80000;
    private const int FSetPipeSize = 1031;
    private const uint SpliceMove = 1, SpliceNonblock = 2;
    private const int MsgMore = 0x8000, MsgNoSignal = 0x4000;
    private const short PollOut = 4;
    private const int EAgain = 11, EIntr = 4;

    private readonly SafeFileHandle _read;
    private readonly SafeFileHandle _write;
    private int _filled;
    private byte[]? _zeroes; // made on the first hole lent, never written

    private SplicePipe(SafeFileHandle read, SafeFileHandle write, int capacity)
    {
        _read = read;
        _write = write;
        Capacity = capacity;
    }

    /// <summary>Bytes the pipe holds at most (a multiple of the page size).</summary>
    public int Capacity { get; }

    /// <summary>Bytes filled in so far and not yet sent.</summary>
    public int Filled => _filled;

    /// <summary>A new pipe, as large as the system allows up to <see cref="WantedCapacity"/>; null where none can be made.</summary>
    public static SplicePipe? TryCreate()
    {
        Span<int> fds = stackalloc int[2];
        if (pipe2(ref MemoryMarshal.GetReference(fds), ONonblock | OCloexec) != 0)
            return null;
        var read = new SafeFileHandle(fds[0], ownsHandle: true);
        var write = new SafeFileHandle(fds[1], ownsHandle: true);
        int capacity = fcntl(write, FSetPipeSize, WantedCapacity);
        if (capacity < PageSize)
        {
            read.Dispose();
            write.Dispose();
            return null;
        }
        return new SplicePipe(read, write, capacity);
    }

    /// <summary>Whether a read of <paramref name="length"/> bytes at <paramref name="offset"/> fits: page-aligned (one pipe slot per page) and no larger than the pipe.</summary>
    public bool Fits(ulong offset, int length) =>
        offset % PageSize == 0 && length % PageSize == 0 && length <= Capacity;

    public void TakeFile(SafeFileHandle file, long fileOffset, int length)
    {
        long at = fileOffset;
        Fill(length, "a file's bytes", left => SpliceIn(file, ref at, _write, 0, (nuint)left, SpliceMove | SpliceNonblock));
    }

    public void TakeZeroes(int length)
    {
        var zeroes = _zeroes ??= new byte[64 * 1024];
        Fill(length, "zeroes", left => write(_write, ref MemoryMarshal.GetArrayDataReference(zeroes), (nuint)Math.Min(left, zeroes.Length)));
    }

    /// <summary>Moves <paramref name="length"/> bytes into the pipe, <paramref name="step"/> at a time (it returns what a call moved).</summary>
    private void Fill(int length, string what, Func<int, nint> step)
    {
        int left = length;
        while (left > 0)
        {
            nint n = step(left);
            if (n > 0)
            {
                left -= (int)n;
                _filled += (int)n;
                continue;
            }
            int errno = Marshal.GetLastPInvokeError();
            if (n < 0 && errno == EIntr)
                continue;
            // EAGAIN: no room left; 0: a file ends before the piece; anything else: refused.
            throw new PipeFullException($"putting {left} bytes of {what} into the reply pipe stopped ({(n == 0 ? "end of file" : $"errno {errno}")})");
        }
    }

    /// <summary>
    /// Sends <paramref name="header"/>, then everything the pipe holds, to <paramref name="socket"/>;
    /// blocks until the socket has taken it all. Throws <see cref="IOException"/> when the socket
    /// fails (the peer is gone): the pipe is then left holding data and must be disposed.
    /// </summary>
    public void SendTo(Socket socket, ReadOnlySpan<byte> header)
    {
        var handle = socket.SafeHandle;
        int sent = 0;
        while (sent < header.Length)
        {
            nint n = send(handle, ref MemoryMarshal.GetReference(header[sent..]), (nuint)(header.Length - sent), MsgMore | MsgNoSignal);
            if (n > 0)
                sent += (int)n;
            else
                WaitOrThrow(handle, n, "sending a reply header");
        }
        while (_filled > 0)
        {
            nint n = SpliceOut(_read, 0, handle, 0, (nuint)_filled, SpliceMove);
            if (n > 0)
                _filled -= (int)n;
            else
                WaitOrThrow(handle, n, "splicing read data into the socket");
        }
    }

    public void Dispose()
    {
        _read.Dispose();
        _write.Dispose();
    }

    /// <summary>After a call that moved nothing: waits for room on EAGAIN (a non-blocking socket), retries on EINTR, else throws.</summary>
    private static void WaitOrThrow(SafeSocketHandle socket, nint result, string what)
    {
        int errno = result < 0 ? Marshal.GetLastPInvokeError() : 0;
        if (errno == EIntr)
            return;
        if (errno == EAgain)
        {
            var fd = new PollFd { Fd = (int)socket.DangerousGetHandle(), Events = PollOut };
            poll(ref fd, 1, -1);
            return;
        }
        throw new IOException($"{what} failed: {(result == 0 ? "the socket took nothing" : Marshal.GetPInvokeErrorMessage(errno))}");
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int pipe2(ref int fds, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(SafeFileHandle fd, int cmd, int arg);

    [LibraryImport("libc", EntryPoint = "splice", SetLastError = true)]
    private static partial nint SpliceIn(SafeFileHandle fdIn, ref long offIn, SafeFileHandle fdOut, nint offOut, nuint length, uint flags);

    [LibraryImport("libc", EntryPoint = "splice", SetLastError = true)]
    private static partial nint SpliceOut(SafeFileHandle fdIn, nint offIn, SafeSocketHandle fdOut, nint offOut, nuint length, uint flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint write(SafeFileHandle fd, ref byte buffer, nuint count);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint send(SafeSocketHandle fd, ref byte buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int poll(ref PollFd fds, nuint count, int timeout);
}

/// <summary>A piece did not fit in a <see cref="SplicePipe"/> (or could not be spliced): the reply is copied instead.</summary>
internal sealed class PipeFullException(string message) : Exception(message);
