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

/// MPI requests in one preallocated array; idle slots hold `MPI_REQUEST_NULL`, which
/// `MPI_Testall`/`MPI_Waitall` skip.
final class MPIReductionRequests: ReductionRequests {
    let capacity: Int
    private let communicator: MPICommunicator
    private let requests: UnsafeMutablePointer<MPI_Request?>
    private var pending = 0

    init(capacity: Int, communicator: MPICommunicator) {
        self.capacity = capacity
        self.communicator = communicator
        requests = .allocate(capacity: max(capacity, 1))
        requests.initialize(repeating: shim_MPI_REQUEST_NULL(), count: max(capacity, 1))
    }

    deinit {
        if pending > 0, MPIRuntime.mpiUsable() { try? waitAll() }
        requests.deallocate()
    }

    func start(slot: Int, _ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp) throws {
        precondition(slot >= 0 && slot < capacity, "reduction slot \(slot) out of 0..<\(capacity)")
        precondition(requests[slot] == shim_MPI_REQUEST_NULL(), "reduction slot \(slot) is still pending")
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        guard let n = Int32(exactly: buffer.count) else {
            throw DistError(rank: communicator.worldRank, operation: "MPI_Iallreduce", code: Int(MPI_ERR_COUNT),
                            message: "\(buffer.count) elements exceed one MPI call")
        }
        let rc = MPI_Iallreduce(UnsafeRawPointer(shim_MPI_IN_PLACE()), base, n, shim_MPI_FLOAT(),
                                communicator.mpiOp(op), communicator.comm, requests + slot)
        try communicator.check(rc, "MPI_Iallreduce")
        pending += 1
    }

    func test() throws -> Bool {
        guard pending > 0 else { return true }
        var flag: Int32 = 0
        try communicator.check(MPI_Testall(Int32(capacity), requests, &flag, shim_MPI_STATUSES_IGNORE()), "MPI_Testall")
        if flag != 0 { pending = 0 }
        return flag != 0
    }

    func waitAll() throws {
        guard pending > 0 else { return }
        pending = 0
        try communicator.check(MPI_Waitall(Int32(capacity), requests, shim_MPI_STATUSES_IGNORE()), "MPI_Waitall")
    }
}
