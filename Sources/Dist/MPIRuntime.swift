import CMPI
import Foundation

/// Process-wide MPI lifetime: `start()` once (idempotent), use `world`, `finish()` at the end.
/// Works both under `mpirun` and as a singleton (a plain process: world size 1).
public enum MPIRuntime {
    /// Mutable runtime state behind a lock (start/finish may race with deinit of communicators).
    private final class State: @unchecked Sendable {
        let lock = NSLock()
        var started = false
        var finished = false
        var world: MPICommunicator?
        var worldRank = 0
        var threadLevel: Int32 = -1
    }
    private static let state = State()

    /// Calls `MPI_Init_thread` requesting `MPI_THREAD_MULTIPLE` (at least `MPI_THREAD_FUNNELED`
    /// is required), then sets `MPI_ERRORS_RETURN` on `MPI_COMM_WORLD` so every call's return
    /// code reaches the caller as a `DistError`. Idempotent. MPI cannot restart after `finish()`.
    public static func start() throws {
        state.lock.lock()
        defer { state.lock.unlock() }
        if state.started { return }
        if state.finished {
            throw DistError(rank: state.worldRank, operation: "MPI_Init_thread", code: Int(MPI_ERR_OTHER),
                            message: "MPI was already finalized in this process and cannot be restarted")
        }
        var initialized: Int32 = 0
        _ = MPI_Initialized(&initialized)
        var provided: Int32 = 0
        if initialized == 0 {
            let rc = MPI_Init_thread(nil, nil, shim_MPI_THREAD_MULTIPLE(), &provided)
            if rc != MPI_SUCCESS {
                throw DistError(rank: 0, operation: "MPI_Init_thread", code: Int(rc), message: errorString(rc))
            }
        } else {
            // Someone else (another library) initialized MPI: adopt it.
            let rc = MPI_Query_thread(&provided)
            if rc != MPI_SUCCESS {
                throw DistError(rank: 0, operation: "MPI_Query_thread", code: Int(rc), message: errorString(rc))
            }
        }
        let world: MPI_Comm = shim_MPI_COMM_WORLD()
        var r: Int32 = 0
        var rc = MPI_Comm_rank(world, &r)
        if rc != MPI_SUCCESS {
            throw DistError(rank: 0, operation: "MPI_Comm_rank", code: Int(rc), message: errorString(rc))
        }
        state.worldRank = Int(r)
        rc = MPI_Comm_set_errhandler(world, shim_MPI_ERRORS_RETURN())
        if rc != MPI_SUCCESS {
            throw DistError(rank: Int(r), operation: "MPI_Comm_set_errhandler", code: Int(rc),
                            message: errorString(rc))
        }
        if provided < shim_MPI_THREAD_FUNNELED() {
            throw DistError(rank: Int(r), operation: "MPI_Init_thread", code: Int(MPI_ERR_OTHER),
                            message: "MPI granted thread level \(provided); at least MPI_THREAD_FUNNELED "
                                + "(\(shim_MPI_THREAD_FUNNELED())) is required")
        }
        state.threadLevel = provided
        state.world = try MPICommunicator(comm: world, owned: false, worldRank: Int(r))
        state.started = true
    }

    /// Whether `start()` succeeded and `finish()` has not been called yet.
    public static var isActive: Bool {
        state.lock.lock()
        defer { state.lock.unlock() }
        return state.started && !state.finished
    }

    /// The world communicator. `start()` must have been called.
    public static var world: MPICommunicator {
        state.lock.lock()
        defer { state.lock.unlock() }
        guard let w = state.world else {
            preconditionFailure("MPIRuntime.world used before MPIRuntime.start() (or after finish())")
        }
        return w
    }

    /// This process's rank in `MPI_COMM_WORLD` (0 before `start()`).
    public static var worldRank: Int {
        state.lock.lock()
        defer { state.lock.unlock() }
        return state.worldRank
    }

    /// The thread support level MPI granted (MPI_THREAD_SINGLE=0 … MPI_THREAD_MULTIPLE=3), or -1 before `start()`.
    public static var threadLevel: Int {
        state.lock.lock()
        defer { state.lock.unlock() }
        return Int(state.threadLevel)
    }

    /// Calls `MPI_Finalize` (collective: every rank must call it). Idempotent; a no-op if MPI
    /// was never started. Communicators must not be used afterwards.
    public static func finish() throws {
        state.lock.lock()
        defer { state.lock.unlock() }
        guard state.started, !state.finished else { return }
        state.finished = true
        state.world = nil
        let rc = MPI_Finalize()
        if rc != MPI_SUCCESS {
            throw DistError(rank: state.worldRank, operation: "MPI_Finalize", code: Int(rc),
                            message: errorString(rc))
        }
    }

    /// Aborts every rank of the job (`MPI_Abort` on world) so that one failing rank does not
    /// leave the others hanging in a collective. Without active MPI, just exits.
    public static func abort(code: Int = 1) -> Never {
        if mpiUsable() {
            _ = MPI_Abort(shim_MPI_COMM_WORLD(), Int32(truncatingIfNeeded: code))
        }
        exit(Int32(truncatingIfNeeded: code))
    }

    /// `MPI_Get_processor_name` (falls back to the host name when MPI is not active).
    public static var processorName: String {
        if mpiUsable() {
            var buf = [CChar](repeating: 0, count: Int(shim_MPI_MAX_PROCESSOR_NAME()) + 1)
            var len: Int32 = 0
            if MPI_Get_processor_name(&buf, &len) == MPI_SUCCESS {
                return String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        }
        return ProcessInfo.processInfo.hostName
    }

    /// Rank among the processes of this job on this node (`OMPI_COMM_WORLD_LOCAL_RANK`, else 0).
    public static var localRank: Int { envInt("OMPI_COMM_WORLD_LOCAL_RANK") ?? 0 }

    /// Number of processes of this job on this node (`OMPI_COMM_WORLD_LOCAL_SIZE`, else 1).
    public static var localSize: Int { envInt("OMPI_COMM_WORLD_LOCAL_SIZE") ?? 1 }

    private static func envInt(_ name: String) -> Int? {
        ProcessInfo.processInfo.environment[name].flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    /// MPI is initialized and not finalized (asks MPI itself, so it is right even if another
    /// library initialized it).
    static func mpiUsable() -> Bool {
        var initialized: Int32 = 0, finalized: Int32 = 0
        _ = MPI_Initialized(&initialized)
        _ = MPI_Finalized(&finalized)
        return initialized != 0 && finalized == 0
    }

    /// `MPI_Error_string` for a return code.
    static func errorString(_ code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: Int(shim_MPI_MAX_ERROR_STRING()) + 1)
        var len: Int32 = 0
        guard MPI_Error_string(code, &buf, &len) == MPI_SUCCESS else { return "unknown MPI error" }
        return String(decoding: buf.prefix(Int(len)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
