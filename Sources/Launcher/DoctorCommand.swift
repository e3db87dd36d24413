import ArgumentParser
import Dist
import Foundation

/// `distrainer doctor`: checks an MPI installation or cluster before a long run.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check MPI across the ranks: every collective, where each rank runs, allreduce bandwidth.",
        discussion: "Run it as the training job would run: `mpirun -n 8 --hostfile H distrainer doctor`.")

    @Flag(help: "Print one JSON line instead of a table.") var json = false
    @Option(help: "Megabytes per allreduce for the bandwidth figure.") var mb: Double = 16

    func run() throws {
        try MPISession.run { comm in
            let checks = try CollectiveChecks.run(comm)
            let host = "\(MPIRuntime.processorName) pid \(getpid()) local \(MPIRuntime.localRank)/\(MPIRuntime.localSize) OPENBLAS_NUM_THREADS=\(ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] ?? "unset")"
            let hosts = try comm.gather(bytes: Array(host.utf8), root: 0)?.map { String(decoding: $0, as: UTF8.self) }
            let gbps = comm.size > 1 ? try allreduceBandwidth(comm, megabytes: mb) : nil
            let failedAnywhere = try comm.allreduce([Int64(checks.values.filter { !$0 }.count)], op: .max)[0] > 0
            if comm.rank == 0 {
                if json {
                    let object: [String: Any] = ["world_size": comm.size, "hosts": hosts ?? [], "checks": checks,
                                                 "all_ok": !failedAnywhere, "allreduce_gbps": gbps ?? NSNull(), "allreduce_mb": mb]
                    print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
                } else {
                    print("world size \(comm.size)")
                    for (r, h) in (hosts ?? []).enumerated() { print("  rank \(r): \(h)") }
                    for (name, ok) in checks.sorted(by: { $0.key < $1.key }) { print("  \(ok ? "ok  " : "FAIL") \(name)") }
                    print(gbps.map { String(format: "  allreduce %.1f MB in place: %.2f GB/s", mb, $0) } ?? "  allreduce bandwidth: single rank, nothing to measure")
                    print(failedAnywhere ? "SOME CHECKS FAILED" : "all checks passed")
                }
            }
            if failedAnywhere { throw ExitCode(2) }
        }
    }

    /// Median algorithm bandwidth (bytes per rank / time) of in-place float allreduces.
    func allreduceBandwidth(_ comm: Communicator, megabytes: Double) throws -> Double {
        let n = max(1, Int(megabytes * 1_048_576 / 4))
        var buffer = [Float](repeating: 1, count: n)
        var times: [Double] = []
        for i in 0..<7 {
            try comm.barrier()
            let t = DispatchTime.now().uptimeNanoseconds
            try buffer.withUnsafeMutableBufferPointer { try comm.allreduce($0, op: .sum) }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
            if i > 0 { times.append(try comm.allreduce([dt], op: .max)[0]) } else { _ = try comm.allreduce([dt], op: .max) }
        }
        times.sort()
        return Double(4 * n) / times[times.count / 2] / 1e9
    }
}

/// Every collective of `Communicator`, run and checked against closed-form results.
enum CollectiveChecks {
    static func run(_ comm: Communicator) throws -> [String: Bool] {
        let r = comm.rank, w = comm.size
        var c: [String: Bool] = [:]
        let triangle = w * (w - 1) / 2   // Σ ranks
        c["allreduce_sum_float"] = try comm.allreduce([Float(r), 1], op: .sum) == [Float(triangle), Float(w)]
        c["allreduce_sum_double"] = try comm.allreduce([Double(r) + 0.5], op: .sum) == [Double(triangle) + 0.5 * Double(w)]
        c["allreduce_sum_int64"] = try comm.allreduce([Int64(r) << 33], op: .sum) == [Int64(triangle) << 33]
        c["allreduce_max_float"] = try comm.allreduce([Float(r)], op: .max) == [Float(w - 1)]
        c["allreduce_min_int64"] = try comm.allreduce([Int64(r + 5)], op: .min) == [5]
        c["allreduce_max_double"] = try comm.allreduce([-Double(r)], op: .max) == [0]

        var raw = (0..<16).map { UInt8(r == 0 ? $0 : 0) }
        try raw.withUnsafeMutableBytes { try comm.broadcast($0, root: 0) }
        c["broadcast_raw"] = raw == (0..<16).map { UInt8($0) }
        let lastRoot = w - 1
        let text = try comm.broadcast(bytes: r == lastRoot ? Array("from the last rank".utf8) : [], root: lastRoot)
        c["broadcast_bytes"] = String(decoding: text, as: UTF8.self) == "from the last rank"

        let gathered = try comm.gather([Int32(r), Int32(r * r)], root: 0)
        c["gather_fixed"] = r != 0 || gathered == (0..<w).map { [Int32($0), Int32($0 * $0)] }
        let bytes = try comm.gather(bytes: [UInt8](repeating: UInt8(r % 256), count: r), root: 0)
        c["gather_bytes"] = r != 0 || bytes == (0..<w).map { [UInt8](repeating: UInt8($0 % 256), count: $0) }

        try comm.barrier()
        c["barrier"] = true

        // Split into even and odd ranks; sum ranks inside each group.
        let group = try comm.split(color: r % 2, key: r)
        let members = stride(from: r % 2, to: w, by: 2).map { $0 }
        c["split_size"] = group.size == members.count && group.rank == members.firstIndex(of: r)
        c["split_allreduce"] = try group.allreduce([Int64(r)], op: .sum) == [Int64(members.reduce(0, +))]

        var values = [Double](repeating: Double(r), count: 1000)
        try values.withUnsafeMutableBufferPointer { buf in
            let req = try comm.iallreduce(buf, op: .sum)
            try req.wait()
        }
        c["iallreduce"] = values.allSatisfy { $0 == Double(triangle) }

        // Buckets that do not divide the buffer.
        let count = 10_007
        var grads = (0..<count).map { Float($0 % 13) * Float(r + 1) }
        let reducer = BucketedAllreduce(count: count, bucketElements: 1000, communicator: comm)
        try grads.withUnsafeMutableBufferPointer { try reducer.reduce($0.baseAddress!) }
        let factor = Float(w * (w + 1) / 2)
        c["bucketed_allreduce"] = reducer.buckets.count == 11 && (0..<count).allSatisfy { grads[$0] == Float($0 % 13) * factor }
        return c
    }
}
