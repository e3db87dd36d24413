import ArgumentParser
import Training

/// `distrainer cv`: k-fold cross-validation, folds trained in parallel by groups of ranks.
struct CVCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cv",
        abstract: "k-fold cross-validation; folds are trained in parallel by groups of MPI ranks.",
        discussion: """
        `mpirun -n 8 distrainer cv --folds 4 …` splits the ranks into groups of --ranks-per-fold
        (default: ranks / folds) with MPI_Comm_split; group g trains folds g, g+G, … in turn, each
        data-parallel inside its group. RUN_DIR gets folds.json, fold-K/ (history, checkpoints,
        oof.jsonl, metrics.json) and cv_summary.json. Across hosts, keep a group on one node:
        `--map-by node` places consecutive ranks round-robin over nodes, so with R ranks per fold use
        `--map-by ppr:R:node` (R consecutive ranks per node) or a rankfile.
        """)

    @OptionGroup var training: TrainingOptionGroup
    @Option(help: "Number of folds.") var folds = 5
    @Option(help: "Ranks that train one fold together (default: ranks / folds, at least 1).") var ranksPerFold: Int?

    func run() throws {
        let options = try training.options(valManifest: nil)   // before MPI: errors map to --config keys
        let config = try RunConfig.resolvedYAML(of: self, valid: RunConfig.options(of: Self.self))
        try MPISession.run { world in
            if world.rank == 0 { try RunConfig.save(config, runDirectory: options.outDir) }
            var o = CVOptions(training: options)
            o.folds = folds
            o.ranksPerFold = ranksPerFold
            try CrossValidation(options: o, world: world).run()
        }
    }
}
