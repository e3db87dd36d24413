import CMPI
import Foundation

/// Process-wide MPI state: initialisation, the world communicator, finalisation.
public enum MPIRuntime {
    nonisolated(unsafe) private static var worldComm: MPICommunicator?
    nonisolated(unsafe) private static var finished = false

    /// Initialises MPI once (MPI_Init_thread, asking for MPI_THREAD_MULTIPLE and requiring at
    /// least MPI_THREAD_FUNNELED) and makes every error on the world communicator return a code
    /// instead of aborting, so each call's result is checked. Works under mpirun and as a
    /// singleton (a plain `distrainer …`).
    public static func start() throws {
        if worldComm != nil { return }
        var initialized: Int32 = 0
        MPI_Initialized(&initialized)
        if initialized == 0 {
            var provided: Int32 = 0
            let rc = MPI_Init_thread(nil, nil, dt_thread_multiple(), &provided)
            guard rc == dt_success() else { throw DistError(rank: -1, operation: "MPI_Init_thread", code: rc, message: errorString(rc)) }
            guard provided >= dt_thread_funneled() else {
                throw DistError(rank: -1, operation: "MPI_Init_thread", code: provided,
                                message: "the MPI library grants thread level \(provided), below MPI_THREAD_FUNNELED")
            }
        }
        let world = dt_comm_world()!
        MPI_Comm_set_errhandler(world, dt_errors_return()!)
        worldComm = try MPICommunicator(handle: world, owned: false)
    }

    /// The world communicator (`start()` first).
    public static var world: MPICommunicator {
        guard let w = worldComm else { fatalError("MPIRuntime.start() was not called") }
        return w
    }

    /// MPI_Finalize, once.
    public static func finish() {
        guard worldComm != nil, !finished else { return }
        finished = true
        MPI_Finalize()
    }

    /// Stops every rank of the job (MPI_Abort on the world), so one failing rank never leaves
    /// the others waiting in a collective.
    public static func abort(code: Int32) -> Never {
        MPI_Abort(dt_comm_world(), code)
        exit(code)
    }

    /// This host's name as MPI reports it.
    public static var processorName: String {
        var buf = [CChar](repeating: 0, count: Int(dt_max_processor_name()) + 1)
        var len: Int32 = 0
        MPI_Get_processor_name(&buf, &len)
        return String(cString: buf)
    }

    /// Rank among the ranks on this host, and their number (from the launcher's environment).
    public static var localRank: Int { Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_RANK"] ?? "") ?? 0 }
    public static var localSize: Int { Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? "") ?? 1 }

    static func errorString(_ code: Int32) -> String {
        var buf = [CChar](repeating: 0, count: Int(dt_max_error_string()) + 1)
        var len: Int32 = 0
        guard MPI_Error_string(code, &buf, &len) == dt_success() else { return "unknown MPI error" }
        return String(cString: buf)
    }
}

/// A communicator over MPI: the world, or a group made by `split`.
public final class MPICommunicator: Communicator {
    let handle: MPI_Comm
    let owned: Bool
    public let rank: Int
    public let size: Int

    init(handle: MPI_Comm, owned: Bool) throws {
        self.handle = handle
        self.owned = owned
        var r: Int32 = 0, s: Int32 = 0
        try Self.check(MPI_Comm_rank(handle, &r), rank: -1, "MPI_Comm_rank")
        try Self.check(MPI_Comm_size(handle, &s), rank: Int(r), "MPI_Comm_size")
        rank = Int(r); size = Int(s)
    }

    deinit {
        if owned {
            var h: MPI_Comm? = handle
            MPI_Comm_free(&h)
        }
    }

    static func check(_ rc: Int32, rank: Int, _ op: String) throws {
        if rc != dt_success() { throw DistError(rank: rank, operation: op, code: rc, message: MPIRuntime.errorString(rc)) }
    }
    private func check(_ rc: Int32, _ op: String) throws { try Self.check(rc, rank: rank, op) }

    static func datatype(_ t: ScalarType) -> MPI_Datatype {
        switch t {
        case .float: return dt_float()
        case .double: return dt_double()
        case .int32: return dt_int32()
        case .int64: return dt_int64()
        case .uint8: return dt_uint8()
        }
    }

    static func mpiOp(_ op: ReduceOp) -> MPI_Op {
        switch op {
        case .sum: return dt_op_sum()
        case .max: return dt_op_max()
        case .min: return dt_op_min()
        }
    }

    public func allreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        guard buffer.count > 0, size > 1 else { return }
        var offset = 0
        // MPI counts are 32-bit: reduce very large buffers in pieces.
        while offset < buffer.count {
            let n = min(buffer.count - offset, Int(Int32.max))
            try check(MPI_Allreduce(dt_in_place(), buffer.baseAddress! + offset, Int32(n), Self.datatype(T.dataType),
                                    Self.mpiOp(op), handle), "MPI_Allreduce")
            offset += n
        }
    }

    public func iallreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws -> CommRequest {
        precondition(buffer.count <= Int(Int32.max))
        let request = MPIRequest(rank: rank)
        try check(MPI_Iallreduce(dt_in_place(), buffer.baseAddress, Int32(buffer.count), Self.datatype(T.dataType),
                                 Self.mpiOp(op), handle, &request.handle), "MPI_Iallreduce")
        return request
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        guard buffer.count > 0, size > 1 else { return }
        var offset = 0
        while offset < buffer.count {
            let n = min(buffer.count - offset, Int(Int32.max))
            try check(MPI_Bcast(buffer.baseAddress! + offset, Int32(n), dt_uint8(), Int32(root), handle), "MPI_Bcast")
            offset += n
        }
    }

    public func broadcast(bytes: [UInt8], root: Int) throws -> [UInt8] {
        guard size > 1 else { return bytes }
        var length = [Int64(bytes.count)]
        try length.withUnsafeMutableBytes { try broadcast($0, root: root) }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(length[0]))
        try out.withUnsafeMutableBytes { try broadcast($0, root: root) }
        return out
    }

    public func gather<T: MPIScalar>(_ values: [T], root: Int) throws -> [[T]]? {
        let n = values.count
        var all = [T](repeating: values.first ?? (0 as! T), count: rank == root ? n * size : 0)
        if n > 0 {
            try values.withUnsafeBufferPointer { send in
                try all.withUnsafeMutableBufferPointer { recv in
                    try check(MPI_Gather(send.baseAddress, Int32(n), Self.datatype(T.dataType), recv.baseAddress, Int32(n),
                                         Self.datatype(T.dataType), Int32(root), handle), "MPI_Gather")
                }
            }
        } else {
            try barrier()
        }
        guard rank == root else { return nil }
        return (0..<size).map { Array(all[($0 * n)..<(($0 + 1) * n)]) }
    }

    public func gather(bytes: [UInt8], root: Int) throws -> [[UInt8]]? {
        let lengths = try gather([Int32(bytes.count)], root: root)?.map { Int($0[0]) }
        var counts = lengths?.map(Int32.init) ?? []
        var displs = [Int32](), total = 0
        for c in counts { displs.append(Int32(total)); total += Int(c) }
        var all = [UInt8](repeating: 0, count: max(total, 1))
        try bytes.withUnsafeBufferPointer { send in
            try all.withUnsafeMutableBufferPointer { recv in
                try counts.withUnsafeMutableBufferPointer { cnt in
                    try displs.withUnsafeMutableBufferPointer { dsp in
                        try check(MPI_Gatherv(send.baseAddress, Int32(bytes.count), dt_uint8(), recv.baseAddress,
                                              cnt.baseAddress, dsp.baseAddress, dt_uint8(), Int32(root), handle), "MPI_Gatherv")
                    }
                }
            }
        }
        guard let lengths else { return nil }
        return lengths.indices.map { Array(all[Int(displs[$0])..<(Int(displs[$0]) + lengths[$0])]) }
    }

    public func barrier() throws { try check(MPI_Barrier(handle), "MPI_Barrier") }

    public func split(color: Int, key: Int) throws -> Communicator {
        var sub: MPI_Comm? = dt_comm_null()
        try check(MPI_Comm_split(handle, Int32(color), Int32(key), &sub), "MPI_Comm_split")
        guard let sub else { throw DistError(rank: rank, operation: "MPI_Comm_split", code: -1, message: "no communicator returned") }
        MPI_Comm_set_errhandler(sub, dt_errors_return()!)
        return try MPICommunicator(handle: sub, owned: true)
    }
}

/// A pending MPI request.
final class MPIRequest: CommRequest {
    var handle: MPI_Request? = dt_request_null()
    let rank: Int
    init(rank: Int) { self.rank = rank }
    func wait() throws {
        try MPICommunicator.check(MPI_Wait(&handle, dt_status_ignore()), rank: rank, "MPI_Wait")
    }
}
