import ArgumentParser
import Foundation

/// The `distrainer` command: distributed image-classifier training over MPI.
@main
struct Distrainer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distrainer",
        abstract: "Distributed image-classification trainer (run under mpirun for data parallelism).",
        subcommands: [TrainCommand.self, CVCommand.self, SplitCommand.self, BenchCommand.self, ModelsCommand.self,
                      ImportIDXCommand.self, DoctorCommand.self, CacheSimCommand.self, FetchBenchCommand.self,
                      EvaluateCommand.self, PredictCommand.self, AugmentBenchCommand.self])

    /// Parses and runs, first expanding `--config FILE` / `--preset NAME` of `train` and `cv`
    /// (see `RunConfig`), so that errors about options from the file name its keys.
    static func main() {
        var origins: [String: RunConfig.Origin] = [:]
        do {
            let expansion = try RunConfig.expand(Array(CommandLine.arguments.dropFirst()))
            origins = expansion.origins
            var command = try parseAsRoot(expansion.arguments)
            try command.run()
        } catch let problem as RunConfig.Problem {
            FileHandle.standardError.write(Data("Error: \(problem)\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        } catch {
            if let message = RunConfig.explain(error, origins: origins) {
                FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
                Foundation.exit(ExitCode.validationFailure.rawValue)
            }
            exit(withError: error)
        }
    }
}
