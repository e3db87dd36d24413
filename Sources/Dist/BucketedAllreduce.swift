import Foundation

/// Gradient allreduce over one flat `Float` buffer in fixed-size buckets, blocking or overlapped
/// with backward.
///
/// Large single `MPI_Allreduce` calls run far below the shared-memory bandwidth (on the
/// reference machine 11M floats in one call took ~25 ms, the same data as 1M-float in-place
/// chunks ~5 ms), so the buffer is reduced bucket by bucket. The plan (bucket boundaries) is
/// computed once in `init`, identically on every rank, from the END of the buffer backwards:
/// backward produces the last layers' gradients first, and parameters are stored in layer order,
/// so the first bucket (the top of the buffer) is complete earliest.
///
/// Two ways to run one step's reduction, both a pure SUM in place over the same buckets in the
/// same order (so they give bitwise-identical results), with no allocation per call:
/// - `reduce(_:)`: blocking, bucket by bucket, after backward.
/// - overlapped: `beginOverlap(_:)` before the last backward, `gradientsFinal(from:)` whenever
///   backward has finished every gradient at offsets ≥ `from` (it starts the buckets that are now
///   complete as non-blocking allreduces and lets MPI progress the pending ones), and
///   `finishOverlap()` before the gradients are read (starts the rest, waits for all).
public final class BucketedAllreduce {
    /// A good default bucket size for shared memory: 1M floats (4 MB).
    public static let defaultBucketElements = 1 << 20

    public let count: Int
    public let bucketElements: Int
    public let communicator: Communicator
    /// Disjoint ranges covering `start..<count`, each at most `bucketElements` long, in launch
    /// order: `[count - b, count)`, `[count - 2b, count - b)`, …, down to `[start, …)`.
    public private(set) var buckets: [Range<Int>]
    /// Elements below it are not reduced (`reduceOnly(from:)`; 0 by default).
    public private(set) var start = 0
    /// Number of reductions (blocking or overlapped) started (debug counter).
    public private(set) var callCount = 0
    /// Whether `gradientsFinal` also calls MPI_Testall on the pending buckets (progress).
    public var pollsProgress = true

    /// Of the last overlapped reduction: buckets started before `finishOverlap` (hidden behind
    /// backward at least in part), nanoseconds from the first start to completion, and
    /// nanoseconds spent blocked in `finishOverlap`.
    public private(set) var lastEarlyBuckets = 0
    public private(set) var lastSpanNanos: UInt64 = 0
    public private(set) var lastWaitNanos: UInt64 = 0

    private var requests: ReductionRequests
    private var buffer: UnsafeMutablePointer<Float>?
    private var nextBucket = 0
    private var firstStart: UInt64 = 0

    public init(count: Int, bucketElements: Int, communicator: Communicator) {
        precondition(count >= 0, "BucketedAllreduce: negative count \(count)")
        precondition(bucketElements > 0, "BucketedAllreduce: bucketElements must be positive")
        precondition(bucketElements <= Int(Int32.max), "BucketedAllreduce: bucketElements must fit one MPI call")
        self.count = count
        self.bucketElements = bucketElements
        self.communicator = communicator
        self.buckets = Self.plan(count: count, bucketElements: bucketElements)
        requests = communicator.makeReductionRequests(capacity: buckets.count)
    }

    /// The bucket boundaries for `count` elements from `start` on, from the end:
    /// `[count - b, count)`, `[count - 2b, count - b)`, …, `[start, count - kb)`.
    public static func plan(count: Int, from start: Int = 0, bucketElements: Int) -> [Range<Int>] {
        precondition(count >= start && start >= 0 && bucketElements > 0)
        return stride(from: count, to: start, by: -bucketElements).map { Swift.max($0 - bucketElements, start)..<$0 }
    }

    /// Reduces only `offset..<count` from now on: the elements below are known to be the same on
    /// every rank (the zero gradients of frozen tensors, which need no communication). Every rank
    /// must make the same call between reductions; the buckets are planned again.
    public func reduceOnly(from offset: Int) {
        precondition(buffer == nil, "BucketedAllreduce.reduceOnly during an overlapped reduction")
        precondition(offset >= 0 && offset <= count, "BucketedAllreduce.reduceOnly(from: \(offset)) outside 0...\(count)")
        guard offset != start else { return }
        start = offset
        buckets = Self.plan(count: count, from: offset, bucketElements: bucketElements)
        requests = communicator.makeReductionRequests(capacity: buckets.count)
    }

    /// Sums `buffer[start..<count]` across all ranks, in place, one bucket at a time (blocking).
    public func reduce(_ buffer: UnsafeMutablePointer<Float>) throws {
        precondition(self.buffer == nil, "BucketedAllreduce.reduce during an overlapped reduction")
        callCount += 1
        for bucket in buckets {
            try communicator.allreduce(UnsafeMutableBufferPointer(start: buffer + bucket.lowerBound,
                                                                  count: bucket.count), op: .sum)
        }
    }

    /// Arms an overlapped reduction of `buffer[start..<count]`: nothing starts until
    /// `gradientsFinal(from:)` or `finishOverlap()`.
    public func beginOverlap(_ buffer: UnsafeMutablePointer<Float>) {
        precondition(self.buffer == nil, "BucketedAllreduce.beginOverlap twice")
        self.buffer = buffer
        nextBucket = 0
        lastEarlyBuckets = 0
    }

    /// Whether an overlapped reduction is armed (between `beginOverlap` and `finishOverlap`).
    public var isOverlapping: Bool { buffer != nil }

    /// Every element at offsets `from..<count` is final for this step: starts the buckets that lie
    /// entirely in that range (in plan order) and lets MPI progress the pending ones. Does nothing
    /// unless an overlapped reduction is armed.
    public func gradientsFinal(from offset: Int) throws {
        guard let buffer else { return }
        while nextBucket < buckets.count, buckets[nextBucket].lowerBound >= offset {
            try start(nextBucket, buffer)
            lastEarlyBuckets += 1
        }
        if pollsProgress { try requests.test() }
    }

    /// Starts the buckets not started yet and waits for all of them; the buffer then holds the sums.
    public func finishOverlap() throws {
        guard let buffer else { preconditionFailure("BucketedAllreduce.finishOverlap without beginOverlap") }
        defer { self.buffer = nil }
        let t = DispatchTime.now().uptimeNanoseconds
        while nextBucket < buckets.count { try start(nextBucket, buffer) }
        try requests.waitAll()
        let end = DispatchTime.now().uptimeNanoseconds
        lastWaitNanos = end - t
        lastSpanNanos = buckets.isEmpty ? 0 : end - firstStart
        callCount += 1
    }

    private func start(_ index: Int, _ buffer: UnsafeMutablePointer<Float>) throws {
        if index == 0 { firstStart = DispatchTime.now().uptimeNanoseconds }
        let b = buckets[index]
        nextBucket = index + 1
        try requests.start(slot: index, UnsafeMutableBufferPointer(start: buffer + b.lowerBound, count: b.count), op: .sum)
    }
}
