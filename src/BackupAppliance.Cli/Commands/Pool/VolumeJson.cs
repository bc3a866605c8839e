using System.Text.Json.Nodes;
using BackupAppliance.ChangeTracking;

namespace BackupAppliance.Cli.Commands.Pool;

/// <summary>The JSON shapes of `vol changes --json` and `vol status --json` (also the control socket's replies).</summary>
public static class VolumeJson
{
    public static JsonObject Changes(ChangeSet set)
    {
        var extents = new JsonArray();
        foreach (var e in set.Extents)
            extents.Add(new JsonObject { ["offset"] = e.Offset, ["length"] = e.Length, ["kind"] = e.IsHole ? "unmapped" : "data" });
        return new JsonObject
        {
            ["volume"] = set.Volume,
            ["method"] = set.Method == ChangeMethod.Era ? "era" : "snapshot-diff",
            ["sinceEra"] = set.SinceEra,
            ["sinceSnapshot"] = set.SinceSnapshot,
            ["blockSize"] = set.BlockSize,
            ["dataBytes"] = set.DataBytes,
            ["unmappedBytes"] = set.UnmappedBytes,
            ["extents"] = extents,
        };
    }

    public static JsonObject Status(VolumeTrackingStatus s)
    {
        var eras = new JsonArray();
        foreach (uint e in s.UndigestedEras)
            eras.Add(e);
        var snaps = new JsonArray();
        foreach (var x in s.Snapshots)
            snaps.Add(new JsonObject { ["name"] = x.Name, ["deviceId"] = x.DeviceId, ["created"] = x.Created, ["era"] = x.Era });
        return new JsonObject
        {
            ["name"] = s.Name, ["deviceId"] = s.DeviceId, ["size"] = s.Size, ["blockSize"] = s.BlockSize, ["readOnly"] = s.ReadOnly,
            ["eraFile"] = s.EraFile, ["currentEra"] = s.CurrentEra, ["undigestedEras"] = eras, ["snapshots"] = snaps,
        };
    }

    /// <summary>Reads a change set back from its JSON (the control socket's reply).</summary>
    public static ChangeSet ParseChanges(JsonObject o)
    {
        var extents = o["extents"]!.AsArray().Select(x => new BackupAppliance.Core.VolumeExtent(
            x!["offset"]!.GetValue<long>(), x["length"]!.GetValue<long>(), x["kind"]!.GetValue<string>() == "unmapped")).ToList();
        return new ChangeSet(o["volume"]!.GetValue<string>(), o["method"]!.GetValue<string>() == "era" ? ChangeMethod.Era : ChangeMethod.SnapshotDiff,
            o["blockSize"]!.GetValue<int>(), extents)
        {
            SinceEra = o["sinceEra"]?.GetValue<uint>(),
            SinceSnapshot = o["sinceSnapshot"]?.GetValue<string>(),
        };
    }
}
