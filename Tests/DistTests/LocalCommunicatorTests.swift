import Testing
@testable import Dist

@Suite struct LocalCommunicatorTests {
    let comm = LocalCommunicator()

    @Test func identityAndShape() throws {
        #expect(comm.rank == 0)
        #expect(comm.size == 1)
        #expect(comm.isRoot)
        #expect(try comm.allreduce([1.5, -2, 3] as [Float], op: .sum) == [1.5, -2, 3])
        #expect(try comm.allreduce([Int64.max, Int64.min], op: .max) == [Int64.max, Int64.min])
        #expect(try comm.allreduce([UInt8](), op: .min) == [])
        var buf: [Double] = [1, 2, 3]
        try buf.withUnsafeMutableBufferPointer { try comm.allreduce($0, op: .sum) }
        #expect(buf == [1, 2, 3])
        try buf.withUnsafeMutableBufferPointer { try comm.iallreduce($0, op: .min).wait() }
        #expect(buf == [1, 2, 3])
    }

    @Test func broadcastGatherBarrier() throws {
        var raw: [UInt8] = [9, 8, 7]
        try raw.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
        #expect(raw == [9, 8, 7])
        #expect(try comm.broadcast(bytes: [1, 2], root: 0) == [1, 2])
        #expect(try comm.gather([Int32(4), 5], root: 0)! == [[4, 5]])
        #expect(try comm.gather(bytes: [], root: 0)! == [[]])
        try comm.barrier()
    }

    @Test func invalidRootAndColorAreReported() throws {
        let e = #expect(throws: DistError.self) { try comm.broadcast(bytes: [1], root: 1) }
        #expect(e?.operation == "MPI_Bcast")
        #expect(e?.description.hasPrefix("rank 0: MPI_Bcast failed") == true)
        #expect(throws: DistError.self) { _ = try comm.gather([Float(1)], root: 2) }
        let s = #expect(throws: DistError.self) { _ = try comm.split(color: -1, key: 0) }
        #expect(s?.operation == "MPI_Comm_split")
    }

    @Test func splitGivesAnotherLocalCommunicator() throws {
        let sub = try comm.split(color: 3, key: 0)
        #expect(sub is LocalCommunicator)
        #expect(sub !== comm)
        #expect(sub.size == 1 && sub.rank == 0)
    }

    @Test func distErrorDescription() {
        let e = DistError(rank: 1, operation: "MPI_Allreduce", code: 5, message: "MPI_ERR_COUNT: invalid count argument")
        #expect(e.description == "rank 1: MPI_Allreduce failed (code 5): MPI_ERR_COUNT: invalid count argument")
    }
}

@Suite struct BucketPlanTests {
    /// The plan covers [0, count) exactly, from the end backwards (backward's order), disjoint,
    /// each bucket non-empty and ≤ bucketElements.
    static func checkPlan(_ plan: [Range<Int>], count: Int, bucketElements: Int) {
        var next = 0
        for r in plan.reversed() {
            #expect(r.lowerBound == next)
            #expect(!r.isEmpty)
            #expect(r.count <= bucketElements)
            next = r.upperBound
        }
        #expect(next == count)
        #expect(plan.count == (count + bucketElements - 1) / bucketElements)
    }

    @Test(arguments: [(0, 4), (1, 1), (1, 1000), (10, 3), (12, 3), (10_007, 1000), (1 << 20, 1 << 18), (5, 7)])
    func planCoversExactly(count: Int, bucketElements: Int) {
        let b = BucketedAllreduce(count: count, bucketElements: bucketElements, communicator: LocalCommunicator())
        Self.checkPlan(b.buckets, count: count, bucketElements: bucketElements)
        #expect(b.buckets == BucketedAllreduce.plan(count: count, bucketElements: bucketElements))
    }

    @Test func lowestBucketIsRemainder() {
        let plan = BucketedAllreduce.plan(count: 10, bucketElements: 4)
        #expect(plan == [6..<10, 2..<6, 0..<2])
    }

    /// Frozen tensors at the start of the buffer are left out: the buckets cover `from..<count`.
    @Test func reduceOnlyPlansTheTrainedPart() throws {
        #expect(BucketedAllreduce.plan(count: 10, from: 3, bucketElements: 4) == [6..<10, 3..<6])
        let b = BucketedAllreduce(count: 10, bucketElements: 4, communicator: LocalCommunicator())
        b.reduceOnly(from: 7)
        #expect(b.start == 7 && b.buckets == [7..<10])
        b.reduceOnly(from: 10)
        #expect(b.buckets.isEmpty)
        b.reduceOnly(from: 0)
        #expect(b.buckets == [6..<10, 2..<6, 0..<2])
    }

    @Test func reduceOnLocalIsIdentityAndCounts() throws {
        let b = BucketedAllreduce(count: 1001, bucketElements: 100, communicator: LocalCommunicator())
        var x = (0..<1001).map { Float($0) * 0.5 }
        let before = x
        try x.withUnsafeMutableBufferPointer { try b.reduce($0.baseAddress!) }
        try x.withUnsafeMutableBufferPointer { try b.reduce($0.baseAddress!) }
        #expect(x == before)
        #expect(b.callCount == 2)
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
