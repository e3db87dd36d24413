import Support
import CMPI

/// A fixed number of reusable slots for non-blocking in-place reductions, so a training step can
/// start and complete its gradient allreduces with no allocation (`iallreduce` returns a new
/// request object per call). Slot `i` holds at most one pending operation at a time.
public protocol ReductionRequests: AnyObject {
    var capacity: Int { get }
    /// Starts `MPI_Iallreduce(MPI_IN_PLACE, buffer, …)` in slot `slot` (which must be idle).
    /// The buffer must stay valid and untouched until the slot completes. At most 2^31-1 elements.
    func start(slot: Int, _ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws
    /// Lets MPI progress pending operations (`MPI_Testall` over the pending slots); true when none
    /// is pending any more. OpenMPI advances non-blocking collectives only inside MPI calls, so
    /// calling this between layers keeps the reductions moving while backward computes.
    @discardableResult func test() throws -> Bool
    /// Blocks until every pending slot has completed.
    func waitAll() throws
}

/// `ReductionRequests` for a size-1 communicator: every reduction is the identity.
final class CompletedReductions: ReductionRequests {
    let capacity: Int
    init(capacity: Int) { self.capacity = capacity }
    func start(slot: Int, _ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        precondition(slot >= 0 && slot < capacity, "reduction slot \(slot) out of 0..<\(capacity)")
    }
    func test() throws -> Bool { true }
    func waitAll() throws {}
}

/// MPI requests in one preallocated array. Each slot keeps a persistent allreduce
/// (`MPI_Allreduce_init`, made on the slot's first use and remade only if its buffer, count or
/// operation changes) and `start` is then just `MPI_Start`: no allocation inside MPI either
/// (`MPI_Iallreduce` builds and frees a schedule per call). Without persistent collectives the
/// slot falls back to `MPI_Iallreduce`. Completed persistent requests stay allocated but
/// inactive, which `MPI_Testall`/`MPI_Waitall` skip like `MPI_REQUEST_NULL`.
final class MPIReductionRequests: ReductionRequests {
    let capacity: Int
    private let communicator: MPICommunicator
    private let requests: UnsafeMutablePointer<MPI_Request?>
    /// What each slot's persistent request reduces (nil base: none made yet).
    private let bases: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private let counts: UnsafeMutablePointer<Int32>
    private let ops: UnsafeMutablePointer<ReduceOp>
    private let active: UnsafeMutablePointer<Bool>
    private var pending = 0
    private var persistentUnsupported = false

    init(capacity: Int, communicator: MPICommunicator) {
        self.capacity = capacity
        self.communicator = communicator
        let n = max(capacity, 1)
        requests = .allocate(capacity: n); requests.initialize(repeating: shim_MPI_REQUEST_NULL(), count: n)
        bases = .allocate(capacity: n); bases.initialize(repeating: nil, count: n)
        counts = .allocate(capacity: n); counts.initialize(repeating: 0, count: n)
        ops = .allocate(capacity: n); ops.initialize(repeating: .sum, count: n)
        active = .allocate(capacity: n); active.initialize(repeating: false, count: n)
    }

    deinit {
        if MPIRuntime.mpiUsable() {
            if pending > 0 { try? waitAll() }
            for i in 0..<capacity where bases[i] != nil && requests[i] != shim_MPI_REQUEST_NULL() {
                _ = MPI_Request_free(requests + i)
            }
        }
        requests.deallocate(); bases.deallocate(); counts.deallocate(); ops.deallocate(); active.deallocate()
    }

    func start(slot: Int, _ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        precondition(slot >= 0 && slot < capacity, "reduction slot \(slot) out of 0..<\(capacity)")
        precondition(!active[slot], "reduction slot \(slot) is still pending")
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        guard let n = Int32(exactly: buffer.count) else {
            throw DistError(rank: communicator.worldRank, operation: "MPI_Iallreduce", code: Int(MPI_ERR_COUNT),
                            message: "\(buffer.count) elements exceed one MPI call")
        }
        if !persistentUnsupported, bases[slot] != UnsafeMutableRawPointer(base) || counts[slot] != n || ops[slot] != op {
            if bases[slot] != nil {
                try communicator.check(MPI_Request_free(requests + slot), "MPI_Request_free")
                bases[slot] = nil
            }
            let rc = shim_allreduce_init_in_place(base, n, shim_MPI_FLOAT(), communicator.mpiOp(op), communicator.comm, requests + slot)
            if rc == MPI_ERR_UNSUPPORTED_OPERATION {
                persistentUnsupported = true
            } else {
                try communicator.check(rc, "MPI_Allreduce_init")
                bases[slot] = UnsafeMutableRawPointer(base); counts[slot] = n; ops[slot] = op
            }
        }
        if persistentUnsupported {
            let rc = LibraryCall.run {
                MPI_Iallreduce(UnsafeRawPointer(shim_MPI_IN_PLACE()), base, n, shim_MPI_FLOAT(),
                               communicator.mpiOp(op), communicator.comm, requests + slot)
            }
            try communicator.check(rc, "MPI_Iallreduce")
        } else {
            try communicator.check(LibraryCall.run { MPI_Start(requests + slot) }, "MPI_Start")
        }
        active[slot] = true
        pending += 1
    }

    func test() throws -> Bool {
        guard pending > 0 else { return true }
        var flag: Int32 = 0
        let rc = LibraryCall.run { MPI_Testall(Int32(capacity), requests, &flag, shim_MPI_STATUSES_IGNORE()) }
        try communicator.check(rc, "MPI_Testall")
        if flag != 0 { markIdle() }
        return flag != 0
    }

    func waitAll() throws {
        guard pending > 0 else { return }
        markIdle()
        let rc = LibraryCall.run { MPI_Waitall(Int32(capacity), requests, shim_MPI_STATUSES_IGNORE()) }
        try communicator.check(rc, "MPI_Waitall")
    }

    private func markIdle() {
        pending = 0
        active.update(repeating: false, count: capacity)
    }
}
