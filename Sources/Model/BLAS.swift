import COpenBLAS

/// Process-wide OpenBLAS settings.
public enum BLAS {
    /// Sets the OpenBLAS thread count, and oneDNN's (OpenMP's) to the same (one per rank by
    /// default: ranks × threads should not exceed the cores of a host).
    public static func setThreads(_ n: Int) {
        openblas_set_num_threads(Int32(max(1, n)))
        OneDNN.setThreads(n)
    }
    public static var threads: Int { Int(openblas_get_num_threads()) }
}
