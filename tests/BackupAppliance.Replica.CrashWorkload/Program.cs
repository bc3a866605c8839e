using BackupAppliance.Replica;
using BackupAppliance.Replica.CrashWorkload;
using BackupAppliance.Thin.Pool;

// Stages and publishes backups of a seeded workload into a replica store until killed (or until
// the given number of points exist): the child process of the replica store's kill -9 test.
// Arguments: <store folder> <seed> <points>. Prints "ready" once the store is open.
if (args.Length != 3)
{
    Console.Error.WriteLine("usage: <store folder> <seed> <points>");
    return 2;
}
string dir = args[0];
var workload = ReplicaWorkload.ForCrashTest(int.Parse(args[1]));
int points = int.Parse(args[2]);
await using var store = Directory.Exists(Path.Combine(dir, "pool"))
    ? ReplicaStore.Open(dir)
    : ReplicaStore.Create(dir, 1L << 30, new PoolSettings());
Console.WriteLine("ready");
for (int k = store.ListPoints(ReplicaWorkload.Agent, ReplicaWorkload.Volume).Count; k < points; k++)
    await workload.BackupAsync(store, k);
Console.WriteLine("done");
return 0;
