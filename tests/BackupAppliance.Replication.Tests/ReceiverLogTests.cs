using BackupAppliance.Replication.Receiving;
using BackupAppliance.Replication.Wire;

namespace BackupAppliance.Replication.Tests;

/// <summary>The receiver's log says its replies in an operator's words, and leaves the routine ones out.</summary>
public class ReceiverLogTests
{
    [Fact]
    public void RepliesAreLoggedInWords()
    {
        Assert.Equal("backup begins: stream 7, credit up to frame 16", VolumeSession.Describe(new BackupBegin(7, 16)));
        Assert.Equal("resume: stream 7 after frame 3 (byte 196608), credit up to frame 19", VolumeSession.Describe(new Resume(7, 3, 196608, 19)));
        Assert.Equal("committed: stream 7, point 20261121T101500Z, digest 00ff", VolumeSession.Describe(new CommitAck(7, "20261121T101500Z", [0x00, 0xff])));
        Assert.Equal("refused (OutOfSequence) stream 7 frame 9: data frame 9 is beyond the next expected, 4",
            VolumeSession.Describe(new ErrorReply(WireErrorCode.OutOfSequence, "data frame 9 is beyond the next expected, 4", 7, 9)));
        Assert.Equal("refused (UnknownVolume): no such volume", VolumeSession.Describe(new ErrorReply(WireErrorCode.UnknownVolume, "no such volume", null, null)));
        Assert.Null(VolumeSession.Describe(new Ack(7, 3, 196608)));
        Assert.Null(VolumeSession.Describe(new Credit(7, 19)));
    }
}
