using BackupAppliance.Benchmarks.Transport;
using BenchmarkDotNet.Running;

// A measurement that needs a live server (started by ops/bench/nats.sh) rather than BenchmarkDotNet.
if (args.Length > 0 && args[0] == NatsThroughput.Command)
    return await NatsThroughput.RunAsync(args[1..]);

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
