import ArgumentParser

/// The `distrainer` command: distributed image-classifier training over MPI.
@main
struct Distrainer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distrainer",
        abstract: "Distributed image-classification trainer (run under mpirun for data parallelism).",
        subcommands: [TrainCommand.self, CVCommand.self, SplitCommand.self, BenchCommand.self, ModelsCommand.self,
                      ImportIDXCommand.self, DoctorCommand.self, CacheSimCommand.self, FetchBenchCommand.self,
                      EvaluateCommand.self, PredictCommand.self, AugmentBenchCommand.self])
}
