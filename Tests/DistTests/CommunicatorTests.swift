import Testing
import Foundation
import Dist
import TestSupport

@Suite struct BucketPlanTests {
    @Test(arguments: [(10_007, 1000), (4096, 1024), (5, 100), (0, 8), (1, 1)])
    func bucketsCoverTheBufferExactlyOnce(count: Int, bucket: Int) {
        let plan = BucketedAllreduce(count: count, bucketElements: bucket, communicator: LocalCommunicator())
        var next = 0
        for b in plan.buckets {
            #expect(b.lowerBound == next)
            #expect(b.count > 0 && b.count <= bucket)
            next = b.upperBound
        }
        #expect(next == count)
        #expect(plan.buckets.count == (count + bucket - 1) / bucket)
    }

    @Test func localCommunicatorIsTheIdentity() throws {
        let c = LocalCommunicator()
        #expect(c.rank == 0 && c.size == 1 && c.isRoot)
        #expect(try c.allreduce([1.5, 2.5], op: .sum) == [1.5, 2.5])
        #expect(try c.broadcast(bytes: [1, 2, 3], root: 0) == [1, 2, 3])
        #expect(try c.gather([Int64(7)], root: 0) == [[7]])
        #expect(try c.gather(bytes: [9], root: 0) == [[9]])
        #expect(try c.split(color: 3, key: 0).size == 1)
        var g: [Float] = [1, 2]
        let reducer = BucketedAllreduce(count: 2, bucketElements: 1, communicator: c)
        try g.withUnsafeMutableBufferPointer { try reducer.reduce($0.baseAddress!) }
        #expect(g == [1, 2] && reducer.callCount == 1)
    }
}

/// Every collective over real OpenMPI ranks, through `distrainer doctor --json`.
@Suite(.serialized) struct MPICollectiveTests {
    func doctor(_ ranks: Int) throws -> [String: Any] {
        let args = ["doctor", "--json", "--mb", "1"]
        let r = ranks == 0 ? try TestSupport.distrainer(args, timeout: 120) : try TestSupport.mpirun(ranks, args, timeout: 120)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let line = try #require(r.stdout.split(separator: "\n").last)
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test(arguments: [0, 2, 4])
    func everyCollectiveChecksOut(ranks: Int) throws {
        let report = try doctor(ranks)
        let world = max(ranks, 1)
        #expect(report["world_size"] as? Int == world)
        #expect(report["all_ok"] as? Bool == true)
        let checks = try #require(report["checks"] as? [String: Bool])
        #expect(checks.count >= 15)
        for (name, ok) in checks { #expect(ok, "\(name) failed on \(world) ranks") }
        #expect((report["hosts"] as? [String])?.count == world)
        if world > 1 { #expect((report["allreduce_gbps"] as? Double ?? 0) > 0) }
    }
}
