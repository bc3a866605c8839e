using BackupAppliance.Replication.Transport;

namespace BackupAppliance.Transport.Nats.Tests;

public sealed class SubjectsTests
{
    [Theory]
    [InlineData("a", "a", true)]
    [InlineData("a", "b", false)]
    [InlineData("a.b", "a", false)]
    [InlineData("a", "a.b", false)]
    [InlineData("*", "a", true)]
    [InlineData("*", "a.b", false)]
    [InlineData("a.*", "a.b", true)]
    [InlineData("a.*", "a", false)]
    [InlineData("a.*.c", "a.b.c", true)]
    [InlineData("a.*.c", "a.b.d", false)]
    [InlineData(">", "a", true)]
    [InlineData(">", "a.b.c", true)]
    [InlineData("a.>", "a", false)]
    [InlineData("a.>", "a.b", true)]
    [InlineData("a.>", "a.b.c.d", true)]
    [InlineData("a.>", "ab.c", false)]
    [InlineData("*.*.>", "a.b", false)]
    [InlineData("*.*.>", "a.b.c", true)]
    [InlineData("bapp.*.*.data", "bapp.agent-1.vol_2.data", true)]
    [InlineData("bapp.*.*.data", "bapp.agent-1.vol_2.ctl", false)]
    [InlineData("abc", "abcd", false)]
    [InlineData("abcd", "abc", false)]
    public void Matching_follows_the_NATS_rules(string pattern, string subject, bool expected)
    {
        Subjects.ValidateSubscribe(pattern);
        Subjects.ValidatePublish(subject);
        Assert.Equal(expected, Subjects.Matches(pattern, subject));
    }

    [Fact]
    public void A_bad_subject_error_names_the_subject_and_the_problem()
    {
        var e = Assert.Throws<ArgumentException>(() => Subjects.ValidatePublish("bapp..data"));
        Assert.Contains("'bapp..data'", e.Message);
        Assert.Contains("empty token", e.Message);
        var w = Assert.Throws<ArgumentException>(() => Subjects.ValidateSubscribe("a.>.b"));
        Assert.Contains("'>' must be the last token", w.Message);
    }
}
