namespace BackupAppliance.Core;

/// <summary>
/// An <see cref="IProgress{T}"/> that calls back on the reporting thread, in order. (The framework's
/// <c>Progress&lt;T&gt;</c> posts each report to the thread pool, so reports may arrive out of order
/// or after the work has returned.)
/// </summary>
public sealed class CallbackProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
