/// Reduction operators for allreduce.
public enum ReduceOp: Sendable { case sum, max, min }

/// Element types a communicator can reduce and move: Float, Double, Int32, Int64, UInt8.
public protocol MPIScalar { static var dataType: ScalarType { get } }
public enum ScalarType: Sendable { case float, double, int32, int64, uint8 }
extension Float: MPIScalar { public static var dataType: ScalarType { .float } }
extension Double: MPIScalar { public static var dataType: ScalarType { .double } }
extension Int32: MPIScalar { public static var dataType: ScalarType { .int32 } }
extension Int64: MPIScalar { public static var dataType: ScalarType { .int64 } }
extension UInt8: MPIScalar { public static var dataType: ScalarType { .uint8 } }

/// A pending non-blocking collective.
public protocol CommRequest: AnyObject { func wait() throws }

/// A group of ranks that run the same collectives in the same order.
///
/// `MPICommunicator` is the real one (world, or a sub-communicator from `split`);
/// `LocalCommunicator` is a single rank without MPI, where every collective is the identity.
/// Nothing outside `Dist` calls MPI: the trainer, evaluation and CV code see only this protocol.
///
///     try MPIRuntime.start()
///     let comm = MPIRuntime.world
///     try comm.allreduce(gradients, op: .sum)
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// In-place allreduce.
    func allreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws
    /// Non-blocking in-place allreduce; `buffer` must stay valid until `wait()`.
    func iallreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws -> CommRequest
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws
    /// Root's bytes on every rank (the length is broadcast first).
    func broadcast(bytes: [UInt8], root: Int) throws -> [UInt8]
    /// Each rank gives the same number of values; root gets them per rank, others nil.
    func gather<T: MPIScalar>(_ values: [T], root: Int) throws -> [[T]]?
    /// Variable-length byte strings gathered to root (others get nil).
    func gather(bytes: [UInt8], root: Int) throws -> [[UInt8]]?
    func barrier() throws
    /// Splits into sub-communicators by `color`, ranked by `key` (MPI_Comm_split).
    func split(color: Int, key: Int) throws -> Communicator
}

public extension Communicator {
    var isRoot: Bool { rank == 0 }

    func allreduce<T: MPIScalar>(_ values: [T], op: ReduceOp) throws -> [T] {
        var v = values
        try v.withUnsafeMutableBufferPointer { try allreduce($0, op: op) }
        return v
    }
}

/// Errors from a collective, naming the rank and the MPI operation.
public struct DistError: Error, CustomStringConvertible {
    public var rank: Int
    public var operation: String
    public var code: Int32
    public var message: String
    public var description: String { "rank \(rank): \(operation) failed (code \(code)): \(message)" }
}

/// One process, no MPI: every collective is the identity.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws {}
    public func iallreduce<T: MPIScalar>(_ buffer: UnsafeMutableBufferPointer<T>, op: ReduceOp) throws -> CommRequest { DoneRequest() }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) throws {}
    public func broadcast(bytes: [UInt8], root: Int) throws -> [UInt8] { bytes }
    public func gather<T: MPIScalar>(_ values: [T], root: Int) throws -> [[T]]? { [values] }
    public func gather(bytes: [UInt8], root: Int) throws -> [[UInt8]]? { [bytes] }
    public func barrier() throws {}
    public func split(color: Int, key: Int) throws -> Communicator { LocalCommunicator() }
    final class DoneRequest: CommRequest { func wait() throws {} }
}
