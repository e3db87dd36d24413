import Foundation

/// The compute thread count of a rank, applied to every library that computes: OpenBLAS (set
/// now) and OpenMP, which oneDNN uses (`OMP_NUM_THREADS`, read when its runtime starts, i.e. at
/// the first parallel region: call `configure` before any convolution runs).
public enum ComputeThreads {
    public static func configure(_ n: Int) {
        let n = max(1, n)
        BLAS.setThreads(n)
        setenv("OMP_NUM_THREADS", "\(n)", 1)
        setenv("OPENBLAS_NUM_THREADS", "\(n)", 1)
    }

    /// Ranks on this host: the launcher's count (OpenMPI `OMPI_COMM_WORLD_LOCAL_SIZE`, Slurm
    /// `SLURM_NTASKS_PER_NODE`, MPICH/Hydra `MPI_LOCALNRANKS`), else 1.
    public static func localRanks(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        for key in ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"] {
            if let v = environment[key].flatMap({ Int($0.split(separator: "(").first ?? "") }), v > 0 { return v }
        }
        return 1
    }

    /// The host's online cores (not this process's affinity mask: mpirun binds each rank to a core).
    public static var hostCores: Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// A warning when local ranks × threads exceeds the host's cores (compute threads then share
    /// cores and every rank slows down, e.g. sgemm 100 → 27 GFLOP/s here), else nil.
    public static func oversubscriptionWarning(threads: Int, localRanks: Int = localRanks(), cores: Int = hostCores) -> String? {
        guard localRanks * threads > cores else { return nil }
        return "warning: \(localRanks) rank(s) on this host × \(threads) compute thread(s) = \(localRanks * threads) > \(cores) cores; "
            + "expect every rank to slow down (use --threads \(max(1, cores / localRanks)) or fewer ranks per host)"
    }
}
