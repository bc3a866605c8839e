namespace BackupAppliance.Thin.Check;

/// <summary>A step of the check ("examining mapping tree", ...) and the problems found during it.</summary>
public sealed record ThinCheckStage(string Title, IReadOnlyList<CheckProblem> Problems);
