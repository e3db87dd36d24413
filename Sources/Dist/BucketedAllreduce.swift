/// Sums a flat Float gradient buffer across ranks in fixed-size buckets.
///
/// In data parallelism the gradient layout never changes, so the plan (bucket boundaries) is
/// computed once, identically on every rank, with no per-step negotiation. Buckets are reduced in
/// place in order; a moderate bucket (~1M floats, 4 MB) measured faster here than one huge
/// allreduce. The reduction is a pure SUM: the trainer scales each rank's loss by
/// 1/(global batch), so the sum is the global mean gradient.
public final class BucketedAllreduce {
    public let count: Int
    public let buckets: [Range<Int>]
    let communicator: Communicator
    /// Number of `reduce` calls (a debug counter: one per optimizer step).
    public private(set) var callCount = 0

    public init(count: Int, bucketElements: Int, communicator: Communicator) {
        precondition(bucketElements > 0)
        self.count = count
        self.communicator = communicator
        buckets = stride(from: 0, to: count, by: bucketElements).map { $0..<min($0 + bucketElements, count) }
    }

    public func reduce(_ buffer: UnsafeMutablePointer<Float>) throws {
        callCount += 1
        guard communicator.size > 1 else { return }
        for b in buckets {
            try communicator.allreduce(UnsafeMutableBufferPointer(start: buffer + b.lowerBound, count: b.count), op: .sum)
        }
    }
}
