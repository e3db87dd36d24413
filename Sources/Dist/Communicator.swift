/// The collective operations the trainer needs, over MPI (`MPICommunicator`) or over a single
/// process with no MPI at all (`LocalCommunicator`).

/// Element-wise reduction for `allreduce`.
public enum ReduceOp: Sendable, CaseIterable {
    case sum, max, min
}

/// The element types MPI can move and reduce here, named without exposing MPI types.
public enum MPIScalarKind: Sendable {
    case float, double, int32, int64, uint8
}

/// Scalar types MPI can reduce: `Float`, `Double`, `Int32`, `Int64`, `UInt8` (for bytes).
public protocol MPIScalar: Sendable {
    /// Which MPI datatype carries this type.
    static var mpiScalarKind: MPIScalarKind { get }
}

extension Float: MPIScalar { public static var mpiScalarKind: MPIScalarKind { .float } }
extension Double: MPIScalar { public static var mpiScalarKind: MPIScalarKind { .double } }
extension Int32: MPIScalar { public static var mpiScalarKind: MPIScalarKind { .int32 } }
extension Int64: MPIScalar { public static var mpiScalarKind: MPIScalarKind { .int64 } }
extension UInt8: MPIScalar { public static var mpiScalarKind: MPIScalarKind { .uint8 } }

/// A group of processes that run collectives together. Every collective must be called by
/// every member, in the same order, with matching arguments (as in MPI).
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// `rank == 0`.
    var isRoot: Bool { get }
    /// Element-wise reduction across all ranks, in place: every rank ends with the result.
    func allreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws
    /// Element-wise reduction across all ranks of `values` (same count on every rank).
    func allreduce<T: MPIScalar>(_ values: [T], op: ReduceOp) throws -> [T]
    /// Non-blocking in-place allreduce (MPI_Iallreduce); the buffer must stay valid (and
    /// untouched) until `wait()` returns.
    func iallreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws -> CommRequest
    /// `capacity` reusable slots for non-blocking in-place reductions (allocated once here;
    /// starting and completing them allocates nothing).
    func makeReductionRequests(capacity: Int) -> ReductionRequests
    /// Root's bytes are copied into `buffer` on every rank (same length on every rank).
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Variable-length: root's bytes are returned on every rank (length broadcast first);
    /// the argument is ignored on the other ranks.
    func broadcast(bytes: [UInt8], root: Int) throws -> [UInt8]
    /// Each rank contributes `values` (same count on every rank); root gets [rank][values],
    /// the others nil.
    func gather<T: MPIScalar>(_ values: [T], root: Int) throws -> [[T]]?
    /// Variable-length bytes gathered to root (lengths first, then MPI_Gatherv); others get nil.
    func gather(bytes: [UInt8], root: Int) throws -> [[UInt8]]?
    func barrier() throws
    /// MPI_Comm_split: ranks with the same `color` (>= 0) form a new communicator, ordered by
    /// `key` (ties by old rank). `LocalCommunicator` returns a new `LocalCommunicator`.
    func split(color: Int, key: Int) throws -> Communicator
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    /// Whether every rank passed the same `bytes` (rank 0's are broadcast and compared; every
    /// rank learns the answer).
    public func agree(on bytes: [UInt8]) throws -> Bool {
        guard size > 1 else { return true }
        let root = try broadcast(bytes: bytes, root: 0)
        return try allreduce([root == bytes ? Int32(0) : 1], op: .max)[0] == 0
    }
}

/// A pending non-blocking collective.
public protocol CommRequest: AnyObject {
    /// Blocks until the operation completes. Calling it again after completion returns at once.
    func wait() throws
}

/// A failed collective, naming the (world) rank, the MPI operation, its error code and
/// MPI's own message for it.
public struct DistError: Error, CustomStringConvertible, Sendable {
    public var rank: Int
    /// E.g. "MPI_Allreduce".
    public var operation: String
    public var code: Int
    public var message: String

    public init(rank: Int, operation: String, code: Int, message: String) {
        self.rank = rank
        self.operation = operation
        self.code = code
        self.message = message
    }

    public var description: String {
        "rank \(rank): \(operation) failed (code \(code)): \(message)"
    }
}
