import CMPI

/// A size-1 communicator that uses no MPI at all (for unit tests and single-process tools):
/// every collective is the identity, and arguments are validated as MPI would.
public final class LocalCommunicator: Communicator, Sendable {
    public init() {}

    public var rank: Int { 0 }
    public var size: Int { 1 }

    public func allreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {}

    public func allreduce<T: MPIScalar>(_ values: [T], op: ReduceOp) throws -> [T] { values }

    public func iallreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>,
                                         op: ReduceOp) throws -> CommRequest {
        CompletedRequest()
    }

    public func makeReductionRequests(capacity: Int) -> ReductionRequests {
        CompletedReductions(capacity: capacity)
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {
        try checkRoot(root, "MPI_Bcast")
    }

    public func broadcast(bytes: [UInt8], root: Int) throws -> [UInt8] {
        try checkRoot(root, "MPI_Bcast")
        return bytes
    }

    public func gather<T: MPIScalar>(_ values: [T], root: Int) throws -> [[T]]? {
        try checkRoot(root, "MPI_Gather")
        return [values]
    }

    public func gather(bytes: [UInt8], root: Int) throws -> [[UInt8]]? {
        try checkRoot(root, "MPI_Gatherv")
        return [bytes]
    }

    public func barrier() throws {}

    public func split(color: Int, key: Int) throws -> Communicator {
        guard color >= 0 else {
            throw DistError(rank: 0, operation: "MPI_Comm_split", code: Int(MPI_ERR_ARG),
                            message: "invalid color \(color) (must be >= 0)")
        }
        return LocalCommunicator()
    }

    private func checkRoot(_ root: Int, _ operation: String) throws {
        guard root == 0 else {
            throw DistError(rank: 0, operation: operation, code: Int(MPI_ERR_ROOT),
                            message: "invalid root \(root) for a communicator of size 1")
        }
    }
}

/// A request that is already complete.
final class CompletedRequest: CommRequest, Sendable {
    func wait() throws {}
}
