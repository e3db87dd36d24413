import Support
import CMPI
import Foundation

/// A communicator over MPI. Obtain the world one from `MPIRuntime.world`, others with `split`.
/// Every MPI return code is checked (the handle has `MPI_ERRORS_RETURN`); a failure throws a
/// `DistError` naming this process's world rank and the MPI operation.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// The MPI handle.
    let comm: MPI_Comm
    /// World rank, for error messages.
    let worldRank: Int
    /// Whether this object frees the handle (true for communicators made by `split`).
    private let owned: Bool

    init(comm: MPI_Comm, owned: Bool, worldRank: Int) throws {
        self.comm = comm
        self.owned = owned
        self.worldRank = worldRank
        var r: Int32 = 0, s: Int32 = 0
        var rc = MPI_Comm_rank(comm, &r)
        if rc == MPI_SUCCESS { rc = MPI_Comm_size(comm, &s) }
        if rc != MPI_SUCCESS {
            if owned, MPIRuntime.mpiUsable() {
                var c: MPI_Comm? = comm
                _ = MPI_Comm_free(&c)
            }
            throw DistError(rank: worldRank, operation: "MPI_Comm_rank", code: Int(rc),
                            message: MPIRuntime.errorString(rc))
        }
        rank = Int(r)
        size = Int(s)
    }

    deinit {
        if owned, MPIRuntime.mpiUsable() {
            var c: MPI_Comm? = comm
            _ = MPI_Comm_free(&c)
        }
    }

    // MARK: Checking

    @inline(__always)
    func check(_ rc: Int32, _ operation: StaticString) throws {
        if rc != MPI_SUCCESS { throw failure(rc, "\(operation)") }
    }

    private func failure(_ rc: Int32, _ operation: String) -> DistError {
        DistError(rank: worldRank, operation: operation, code: Int(rc), message: MPIRuntime.errorString(rc))
    }

    private func argumentError(_ operation: String, _ message: String) -> DistError {
        DistError(rank: worldRank, operation: operation, code: Int(MPI_ERR_ARG), message: message)
    }

    private func rootArgument(_ root: Int, _ operation: String) throws -> Int32 {
        // Out-of-range roots are passed through (MPI reports MPI_ERR_ROOT) unless they do not fit.
        guard let r = Int32(exactly: root) else {
            throw DistError(rank: worldRank, operation: operation, code: Int(MPI_ERR_ROOT),
                            message: "invalid root \(root)")
        }
        return r
    }

    /// MPI counts are C ints: split a long buffer into chunks that fit.
    private static let maxChunk = Int(Int32.max)

    // MARK: Collectives

    public func allreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        let dt = datatype(T.self), mop = mpiOp(op), inPlace = UnsafeRawPointer(shim_MPI_IN_PLACE())
        var offset = 0
        while offset < buffer.count {
            let n = min(Self.maxChunk, buffer.count - offset)
            let rc = LibraryCall.run { MPI_Allreduce(inPlace, base + offset, Int32(n), dt, mop, comm) }
            try check(rc, "MPI_Allreduce")
            offset += n
        }
    }

    public func allreduce<T: MPIScalar>(_ values: [T], op: ReduceOp) throws -> [T] {
        var out = values
        try out.withUnsafeMutableBufferPointer { try allreduce($0, op: op) }
        return out
    }

    public func iallreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>,
                                         op: ReduceOp) throws -> CommRequest {
        let request = MPICommRequest(worldRank: worldRank)
        guard let base = buffer.baseAddress, buffer.count > 0 else { return request }
        let dt = datatype(T.self), mop = mpiOp(op), inPlace = UnsafeRawPointer(shim_MPI_IN_PLACE())
        var offset = 0
        while offset < buffer.count {
            let n = min(Self.maxChunk, buffer.count - offset)
            var req: MPI_Request? = shim_MPI_REQUEST_NULL()
            let rc = MPI_Iallreduce(inPlace, base + offset, Int32(n), dt, mop, comm, &req)
            if rc != MPI_SUCCESS {
                try? request.wait()  // complete what was already started before reporting
                throw failure(rc, "MPI_Iallreduce")
            }
            request.requests.append(req)
            offset += n
        }
        return request
    }

    public func makeReductionRequests(capacity: Int) -> ReductionRequests {
        MPIReductionRequests(capacity: capacity, communicator: self)
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        let r = try rootArgument(root, "MPI_Bcast")
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        var offset = 0
        while offset < buffer.count {
            let n = min(Self.maxChunk, buffer.count - offset)
            try check(MPI_Bcast(base + offset, Int32(n), shim_MPI_BYTE(), r, comm), "MPI_Bcast")
            offset += n
        }
    }

    public func broadcast(bytes: [UInt8], root: Int) throws -> [UInt8] {
        let r = try rootArgument(root, "MPI_Bcast")
        var length = Int64(rank == root ? bytes.count : 0)
        try check(MPI_Bcast(&length, 1, shim_MPI_INT64_T(), r, comm), "MPI_Bcast")
        guard length >= 0, let count = Int(exactly: length) else {
            throw argumentError("MPI_Bcast", "received invalid length \(length)")
        }
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try broadcast($0, root: root) }
        return out
    }

    public func gather<T: MPIScalar>(_ values: [T], root: Int) throws -> [[T]]? {
        let r = try rootArgument(root, "MPI_Gather")
        let count = values.count
        guard let n = Int32(exactly: count), Int32(exactly: count * size) != nil else {
            throw argumentError("MPI_Gather", "\(count) values per rank is too many for one MPI_Gather")
        }
        let dt = datatype(T.self)
        // Empty arrays have no storage; MPI still needs valid (if unused) pointers.
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
        defer { scratch.deallocate() }
        if rank == root {
            let total = count * size
            let recv = try [T](unsafeUninitializedCapacity: total) { rb, initialized in
                try values.withUnsafeBufferPointer { send in
                    try check(MPI_Gather(send.baseAddress.map(UnsafeRawPointer.init) ?? UnsafeRawPointer(scratch),
                                         n, dt, rb.baseAddress.map(UnsafeMutableRawPointer.init) ?? scratch,
                                         n, dt, r, comm), "MPI_Gather")
                }
                initialized = total
            }
            return (0..<size).map { Array(recv[($0 * count)..<(($0 + 1) * count)]) }
        } else {
            try values.withUnsafeBufferPointer { send in
                try check(MPI_Gather(send.baseAddress.map(UnsafeRawPointer.init) ?? UnsafeRawPointer(scratch),
                                     n, dt, nil, 0, dt, r, comm), "MPI_Gather")
            }
            return nil
        }
    }

    public func gather(bytes: [UInt8], root: Int) throws -> [[UInt8]]? {
        let r = try rootArgument(root, "MPI_Gatherv")
        // Every rank learns every length, so an oversized total fails on all ranks alike
        // instead of leaving some of them waiting in MPI_Gatherv.
        var lengths = [Int32](repeating: 0, count: size)
        var mine = Int32(clamping: bytes.count)
        try check(MPI_Allgather(&mine, 1, shim_MPI_INT32_T(), &lengths, 1, shim_MPI_INT32_T(), comm),
                  "MPI_Allgather")
        let total = lengths.reduce(0) { $0 + Int($1) }
        guard bytes.count <= Int(Int32.max), total <= Int(Int32.max) else {
            throw argumentError("MPI_Gatherv", "gathering \(total) bytes exceeds the 2 GiB limit of one MPI_Gatherv")
        }
        var displacements = [Int32](repeating: 0, count: size)
        for i in 1..<max(size, 1) { displacements[i] = displacements[i - 1] + lengths[i - 1] }
        var dummy: UInt8 = 0
        if rank == root {
            var recv = [UInt8](repeating: 0, count: max(total, 1))
            try bytes.withUnsafeBufferPointer { send in
                try recv.withUnsafeMutableBufferPointer { rb in
                    try withUnsafePointer(to: &dummy) { d in
                        try check(MPI_Gatherv(send.baseAddress ?? d, mine, shim_MPI_BYTE(),
                                              rb.baseAddress, lengths, displacements, shim_MPI_BYTE(),
                                              r, comm), "MPI_Gatherv")
                    }
                }
            }
            return (0..<size).map {
                let start = Int(displacements[$0])
                return Array(recv[start..<(start + Int(lengths[$0]))])
            }
        } else {
            try bytes.withUnsafeBufferPointer { send in
                try withUnsafePointer(to: &dummy) { d in
                    try check(MPI_Gatherv(send.baseAddress ?? d, mine, shim_MPI_BYTE(),
                                          nil, nil, nil, shim_MPI_BYTE(), r, comm), "MPI_Gatherv")
                }
            }
            return nil
        }
    }

    public func barrier() throws {
        try check(MPI_Barrier(comm), "MPI_Barrier")
    }

    public func split(color: Int, key: Int) throws -> Communicator {
        guard let c = Int32(exactly: color), let k = Int32(exactly: key) else {
            throw argumentError("MPI_Comm_split", "color \(color) / key \(key) out of range")
        }
        var newComm: MPI_Comm? = shim_MPI_COMM_NULL()
        try check(MPI_Comm_split(comm, c, k, &newComm), "MPI_Comm_split")
        guard let handle = newComm, handle != shim_MPI_COMM_NULL() else {
            throw argumentError("MPI_Comm_split",
                                "color \(color) is MPI_UNDEFINED: this rank belongs to no new communicator")
        }
        let result = try MPICommunicator(comm: handle, owned: true, worldRank: worldRank)
        // New communicators inherit the error handler; set it anyway so checking never depends on it.
        try check(MPI_Comm_set_errhandler(handle, shim_MPI_ERRORS_RETURN()), "MPI_Comm_set_errhandler")
        return result
    }

    // MARK: Mapping

    private func datatype<T: MPIScalar>(_: T.Type) -> MPI_Datatype {
        switch T.mpiScalarKind {
        case .float: return shim_MPI_FLOAT()
        case .double: return shim_MPI_DOUBLE()
        case .int32: return shim_MPI_INT32_T()
        case .int64: return shim_MPI_INT64_T()
        case .uint8: return shim_MPI_UINT8_T()
        }
    }

    func mpiOp(_ op: ReduceOp) -> MPI_Op {
        switch op {
        case .sum: return shim_MPI_SUM()
        case .max: return shim_MPI_MAX()
        case .min: return shim_MPI_MIN()
        }
    }
}

/// Pending `MPI_Iallreduce` (one request per 2^31-element chunk). `wait()` may be called from
/// any thread (MPI_THREAD_MULTIPLE), and more than once.
public final class MPICommRequest: CommRequest, @unchecked Sendable {
    /// Filled by `iallreduce` before the request is handed out; afterwards only under `lock`.
    var requests: [MPI_Request?] = []
    private let lock = NSLock()
    private let worldRank: Int

    init(worldRank: Int) { self.worldRank = worldRank }

    public func wait() throws {
        lock.lock()
        defer { lock.unlock() }
        while let first = requests.first {
            var req = first
            let rc = MPI_Wait(&req, shim_MPI_STATUS_IGNORE())
            requests.removeFirst()
            if rc != MPI_SUCCESS {
                throw DistError(rank: worldRank, operation: "MPI_Wait", code: Int(rc),
                                message: MPIRuntime.errorString(rc))
            }
        }
    }

    deinit {
        // Never leave MPI writing into a buffer the caller may free next: complete it here.
        if !requests.isEmpty, MPIRuntime.mpiUsable() { try? wait() }
    }
}
