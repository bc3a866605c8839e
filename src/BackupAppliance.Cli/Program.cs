using System.Text;
using BackupAppliance.Cli;

// Large dumps write millions of lines: a buffered, non-autoflushing stdout (flushed by each command).
using var stdout = new StreamWriter(Console.OpenStandardOutput(), new UTF8Encoding(false), 1 << 16) { NewLine = "\n", AutoFlush = false };
var stderr = new StreamWriter(Console.OpenStandardError(), new UTF8Encoding(false)) { NewLine = "\n", AutoFlush = true };
int rc = BappApp.Run(args, stdout, stderr);
stdout.Flush();
return rc;
