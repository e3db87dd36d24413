import Testing
@testable import Dist

@Suite struct BucketedAllreduceTests {
    /// Buckets tile the buffer from the end backwards (launch order = backward's order).
    @Test(arguments: [(10, 4), (12, 4), (3, 8), (0, 4), (1, 1)])
    func planCoversTheBufferFromTheEnd(count: Int, bucket: Int) {
        let plan = BucketedAllreduce.plan(count: count, bucketElements: bucket)
        #expect(plan.count == (count + bucket - 1) / bucket)
        #expect(plan.first?.upperBound ?? 0 == count)
        #expect(plan.last?.lowerBound ?? 0 == 0)
        #expect(plan.allSatisfy { !$0.isEmpty && $0.count <= bucket })
        #expect(zip(plan, plan.dropFirst()).allSatisfy { $0.lowerBound == $1.upperBound })
    }

    /// `gradientsFinal(from:)` starts exactly the buckets lying entirely above the watermark.
    @Test func bucketsStartWhenTheirWholeRangeIsFinal() throws {
        let r = BucketedAllreduce(count: 10, bucketElements: 4, communicator: LocalCommunicator())   // [6,10) [2,6) [0,2)
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 10)
        defer { buffer.deallocate() }
        try r.gradientsFinal(from: 0)   // not armed: nothing happens
        #expect(!r.isOverlapping)
        r.beginOverlap(buffer)
        try r.gradientsFinal(from: 7)
        #expect(r.lastEarlyBuckets == 0)
        try r.gradientsFinal(from: 6)
        #expect(r.lastEarlyBuckets == 1)
        try r.gradientsFinal(from: Int.max)
        try r.gradientsFinal(from: 3)
        #expect(r.lastEarlyBuckets == 1)
        try r.gradientsFinal(from: 1)
        #expect(r.lastEarlyBuckets == 2)
        try r.finishOverlap()
        #expect(!r.isOverlapping && r.callCount == 1 && r.lastEarlyBuckets == 2)
    }
}
