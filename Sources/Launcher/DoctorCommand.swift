import ArgumentParser
import Dist
import Foundation

/// `distrainer doctor`: a cluster diagnostic. Run it as `mpirun -n N distrainer doctor` (or
/// alone, as a singleton). Every rank reports where it runs; every collective the trainer uses
/// is exercised with results checked against closed-form values on every rank; in-place
/// allreduce bandwidth is measured. Rank 0 prints a table, or one JSON line with `--json`.
/// Exits non-zero if any check fails on any rank; an MPI error aborts the whole job
/// (`MPI_Abort`) after printing which rank and operation failed.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check the MPI setup: every collective with verified results, and allreduce bandwidth.",
        discussion: "Usage: mpirun -n 8 distrainer doctor [--json] [--mb 16]")

    @Flag(help: "Print one JSON line (on rank 0) instead of a table.")
    var json = false

    @Option(help: "Size of the bandwidth-test allreduce in MiB (Float32, in place).")
    var mb: Int = 16

    @Option(help: "Timed repetitions of the bandwidth test (the median is reported).")
    var reps: Int = 10

    /// Test hook: make the named check fail on the last rank (to exercise failure reporting).
    @Option(name: .customLong("fail-check"), help: .hidden)
    var failCheck: String?

    /// Test hook: the last rank calls MPI_Bcast with an invalid root, which must be reported
    /// (rank and operation) and abort the whole job instead of leaving the other ranks waiting.
    @Flag(name: .customLong("inject-mpi-error"), help: .hidden)
    var injectMPIError = false

    func validate() throws {
        guard mb >= 1 else { throw ValidationError("--mb must be at least 1") }
        guard reps >= 1 else { throw ValidationError("--reps must be at least 1") }
    }

    func run() throws {
        try MPISession.run { world in
            if try !diagnose(world) { throw ExitCode(1) }
        }
    }

    // MARK: - The diagnosis

    struct HostInfo: Codable {
        var rank: Int
        var size: Int
        var host: String
        var localRank: Int
        var localSize: Int
        var pid: Int32
        var openblasNumThreads: String?
        var mpiThreadLevel: Int

        enum CodingKeys: String, CodingKey {
            case rank, size, host, pid
            case localRank = "local_rank", localSize = "local_size"
            case openblasNumThreads = "openblas_num_threads", mpiThreadLevel = "mpi_thread_level"
        }

        init(rank: Int, size: Int, host: String, localRank: Int, localSize: Int, pid: Int32,
             openblasNumThreads: String?, mpiThreadLevel: Int) {
            (self.rank, self.size, self.host, self.localRank, self.localSize, self.pid) =
                (rank, size, host, localRank, localSize, pid)
            (self.openblasNumThreads, self.mpiThreadLevel) = (openblasNumThreads, mpiThreadLevel)
        }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            rank = try c.decode(Int.self, forKey: .rank)
            size = try c.decode(Int.self, forKey: .size)
            host = try c.decode(String.self, forKey: .host)
            localRank = try c.decode(Int.self, forKey: .localRank)
            localSize = try c.decode(Int.self, forKey: .localSize)
            pid = try c.decode(Int32.self, forKey: .pid)
            openblasNumThreads = try c.decodeIfPresent(String.self, forKey: .openblasNumThreads)
            mpiThreadLevel = try c.decode(Int.self, forKey: .mpiThreadLevel)
        }

        /// Like the synthesized one, but an unset OPENBLAS_NUM_THREADS is an explicit null.
        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(rank, forKey: .rank)
            try c.encode(size, forKey: .size)
            try c.encode(host, forKey: .host)
            try c.encode(localRank, forKey: .localRank)
            try c.encode(localSize, forKey: .localSize)
            try c.encode(pid, forKey: .pid)
            try c.encode(openblasNumThreads, forKey: .openblasNumThreads)
            try c.encode(mpiThreadLevel, forKey: .mpiThreadLevel)
        }
    }

    struct Report: Encodable {
        var worldSize: Int
        var hosts: [HostInfo]
        var checks: [String: Bool]
        var failures: [String]
        var allOK: Bool
        var allreduceMB: Int
        var allreduceMs: Double
        var allreduceGbps: Double
        var bucketedAllreduceMs: Double
        var bucketedAllreduceGbps: Double

        enum CodingKeys: String, CodingKey {
            case worldSize = "world_size", hosts, checks, failures, allOK = "all_ok"
            case allreduceMB = "allreduce_mb", allreduceMs = "allreduce_ms", allreduceGbps = "allreduce_gbps"
            case bucketedAllreduceMs = "bucketed_allreduce_ms", bucketedAllreduceGbps = "bucketed_allreduce_gbps"
        }
    }

    /// Runs everything on every rank; returns whether all checks passed on all ranks.
    func diagnose(_ world: Communicator) throws -> Bool {
        let env = ProcessInfo.processInfo.environment
        let me = HostInfo(rank: world.rank, size: world.size, host: MPIRuntime.processorName,
                          localRank: MPIRuntime.localRank, localSize: MPIRuntime.localSize,
                          pid: getpid(), openblasNumThreads: env["OPENBLAS_NUM_THREADS"],
                          mpiThreadLevel: MPIRuntime.threadLevel)
        let hostBlobs = try world.gather(bytes: Array(try JSONEncoder().encode(me)), root: 0)

        if injectMPIError && world.rank == world.size - 1 {
            var byte: UInt8 = 0
            try withUnsafeMutableBytes(of: &byte) { try world.broadcast($0, root: world.size + 7) }
        }

        let checks = try runChecks(world)

        // Combine: every rank learns whether all passed; root learns which rank failed what.
        let mine: [UInt8] = checks.map { $0.ok ? 1 : 0 }
        let everywhere = try world.allreduce(mine, op: .min)
        let perRank = try world.gather(mine, root: 0)

        let bandwidth = try measureBandwidth(world)

        guard world.isRoot, let perRank, let hostBlobs else { return !everywhere.contains(0) }
        let hosts = try hostBlobs.map { try JSONDecoder().decode(HostInfo.self, from: Data($0)) }
        var failures: [String] = []
        for (i, c) in checks.enumerated() {
            let bad = perRank.indices.filter { perRank[$0][i] == 0 }
            if !bad.isEmpty { failures.append("\(c.name) failed on rank\(bad.count > 1 ? "s" : "") "
                                              + bad.map(String.init).joined(separator: ",")) }
        }
        let bytes = Double(bandwidth.bytes)
        let report = Report(
            worldSize: world.size, hosts: hosts,
            checks: Dictionary(uniqueKeysWithValues: zip(checks.map(\.name), everywhere.map { $0 != 0 })),
            failures: failures, allOK: !everywhere.contains(0), allreduceMB: mb,
            allreduceMs: bandwidth.plain * 1e3, allreduceGbps: bytes / max(bandwidth.plain, 1e-9) / 1e9,
            bucketedAllreduceMs: bandwidth.bucketed * 1e3,
            bucketedAllreduceGbps: bytes / max(bandwidth.bucketed, 1e-9) / 1e9)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            printTable(report, checkOrder: checks.map(\.name))
        }
        fflush(nil)  // all streams (stdout is not concurrency-safe to name in Swift 6)
        return report.allOK
    }

    // MARK: - Checks

    struct Check { var name: String; var ok: Bool }

    /// Every collective, with results compared to closed-form values. Collective order is the
    /// same on every rank; an MPI error propagates (and aborts the job).
    func runChecks(_ comm: Communicator) throws -> [Check] {
        var checks: [Check] = []
        func record(_ name: String, _ body: () throws -> Bool) throws {
            var ok = try body()
            if name == failCheck && comm.rank == comm.size - 1 { ok = false }
            checks.append(Check(name: name, ok: ok))
        }
        let n = comm.size, r = comm.rank
        let count = 1003
        let triangle = n * (n + 1) / 2  // sum over ranks of (rank + 1)

        // Float through the in-place buffer API: x_i = (rank + 1) * (i % 17 + 1).
        for op in ReduceOp.allCases {
            var x = (0..<count).map { Float((r + 1) * ($0 % 17 + 1)) }
            try x.withUnsafeMutableBufferPointer { try comm.allreduce($0, op: op) }
            let factor: Int = switch op { case .sum: triangle; case .max: n; case .min: 1 }
            try record("allreduce_\(op)_float") { x.indices.allSatisfy { x[$0] == Float(factor * ($0 % 17 + 1)) } }
        }
        // Double through the array API, negative values: x_i = i - 1.5 * rank.
        for op in ReduceOp.allCases {
            let x = try comm.allreduce((0..<count).map { Double($0) - 1.5 * Double(r) }, op: op)
            try record("allreduce_\(op)_double") {
                x.indices.allSatisfy { i in
                    switch op {
                    case .sum: x[i] == Double(n * i) - 1.5 * Double(n * (n - 1) / 2)
                    case .max: x[i] == Double(i)
                    case .min: x[i] == Double(i) - 1.5 * Double(n - 1)
                    }
                }
            }
        }
        // Int64 beyond 32 bits: x_i = (rank + 1) << 33 + i.
        for op in ReduceOp.allCases {
            let x = try comm.allreduce((0..<count).map { Int64(r + 1) << 33 + Int64($0) }, op: op)
            try record("allreduce_\(op)_int64") {
                x.indices.allSatisfy { i in
                    switch op {
                    case .sum: x[i] == Int64(triangle) << 33 + Int64(n * i)
                    case .max: x[i] == Int64(n) << 33 + Int64(i)
                    case .min: x[i] == Int64(1) << 33 + Int64(i)
                    }
                }
            }
        }
        let i32 = try comm.allreduce((0..<count).map { Int32(($0 % 100) * (r + 1)) }, op: .sum)
        try record("allreduce_sum_int32") { i32.indices.allSatisfy { i32[$0] == Int32(($0 % 100) * triangle) } }
        let u8 = try comm.allreduce((0..<count).map { UInt8(($0 + r) % 256) }, op: .max)
        try record("allreduce_max_uint8") {
            u8.indices.allSatisfy { i in u8[i] == (0..<n).map { UInt8((i + $0) % 256) }.max()! }
        }

        // Raw broadcast from the last rank.
        let bRoot = n - 1
        var raw = [UInt8](repeating: 0, count: 4099)
        if r == bRoot { for i in raw.indices { raw[i] = UInt8((i * 31 + 7) & 255) } }
        try raw.withUnsafeMutableBytes { try comm.broadcast($0, root: bRoot) }
        try record("broadcast_raw") { raw.indices.allSatisfy { raw[$0] == UInt8(($0 * 31 + 7) & 255) } }

        // Variable-length broadcast (non-roots pass something else, which is ignored), and an empty one.
        let message = Array("doctor says hello from rank 0 of \(n)".utf8) + (0..<300).map { UInt8($0 % 256) }
        let got = try comm.broadcast(bytes: r == 0 ? message : [UInt8(r)], root: 0)
        let empty = try comm.broadcast(bytes: r == bRoot ? [] : [1, 2, 3], root: bRoot)
        try record("broadcast_bytes") { got == message && empty.isEmpty }

        // Fixed-count gather.
        let fixed = try comm.gather((0..<5).map { Int64(r * 100 + $0) }, root: 0)
        try record("gather_fixed") {
            guard r == 0 else { return fixed == nil }
            return fixed == (0..<n).map { rr in (0..<5).map { Int64(rr * 100 + $0) } }
        }

        // Variable-length gather: rank k sends 3k bytes (rank 0 sends none).
        func payload(_ k: Int) -> [UInt8] { (0..<(3 * k)).map { UInt8((k * 7 + $0) & 255) } }
        let varying = try comm.gather(bytes: payload(r), root: 0)
        try record("gather_bytes") {
            guard r == 0 else { return varying == nil }
            return varying == (0..<n).map(payload)
        }

        try record("barrier") {
            for _ in 0..<3 { try comm.barrier() }
            return true
        }

        // Even/odd split, keys reversing the order; an allreduce inside each group.
        let parity = r % 2
        let sub = try comm.split(color: parity, key: n - r)
        let members = (0..<n).filter { $0 % 2 == parity }
        let subSum = try sub.allreduce([Int64(r)], op: .sum)
        let subMax = try sub.allreduce([Int32(r)], op: .max)
        try sub.barrier()
        try record("split_even_odd") {
            sub.size == members.count
                && sub.rank == members.filter { $0 > r }.count
                && subSum == [Int64(members.reduce(0, +))]
                && subMax == [Int32(members.max()!)]
        }

        // Non-blocking allreduce, overlapped with some local work.
        var nb = [Double](repeating: Double(r + 1), count: 100_000)
        var localWork = 0.0
        try nb.withUnsafeMutableBufferPointer { buf in
            let request = try comm.iallreduce(buf, op: .sum)
            for i in 0..<200_000 { localWork += Double(i & 7) }
            try request.wait()
            try request.wait()  // a second wait is a no-op
        }
        try record("iallreduce") { localWork > 0 && nb.allSatisfy { $0 == Double(triangle) } }

        // Bucketed allreduce: bucket size not dividing the count.
        let bucketed = BucketedAllreduce(count: 10_007, bucketElements: 1000, communicator: comm)
        var grad = (0..<10_007).map { Float(r + 1) + Float($0 % 5) }
        try grad.withUnsafeMutableBufferPointer { try bucketed.reduce($0.baseAddress!) }
        try record("bucketed_allreduce") {
            let planOK = bucketed.buckets.count == 11 && bucketed.buckets.last?.lowerBound == 0
                && bucketed.buckets.first?.upperBound == 10_007
                && zip(bucketed.buckets, bucketed.buckets.dropFirst()).allSatisfy { $0.lowerBound == $1.upperBound }
                && bucketed.buckets.allSatisfy { $0.count <= 1000 && !$0.isEmpty }
            return planOK && bucketed.callCount == 1
                && grad.indices.allSatisfy { grad[$0] == Float(triangle) + Float(n * ($0 % 5)) }
        }

        // The overlapped path (buckets started as a falling watermark passes them, as backward
        // does) gives bitwise the same sums as the blocking one.
        var overlapped = (0..<10_007).map { Float(r + 1) + Float($0 % 5) }
        try overlapped.withUnsafeMutableBufferPointer { g in
            bucketed.beginOverlap(g.baseAddress!)
            for offset in stride(from: 10_007, through: 0, by: -700) { try bucketed.gradientsFinal(from: offset) }
            try bucketed.finishOverlap()
        }
        try record("overlapped_allreduce") { overlapped == grad && bucketed.callCount == 2 }

        // Error reporting: an invalid color (on every rank) must come back as a DistError naming
        // this rank and the operation, not abort. Relies on MPI's argument checking, so it is
        // skipped when that is switched off.
        if ProcessInfo.processInfo.environment["OMPI_MCA_mpi_param_check"] != "0" {
            try record("error_reporting") {
                do {
                    _ = try comm.split(color: -3, key: 0)
                    return false
                } catch let e as DistError {
                    return e.operation == "MPI_Comm_split" && e.rank == MPIRuntime.worldRank
                        && e.description.hasPrefix("rank \(MPIRuntime.worldRank): MPI_Comm_split failed")
                }
            }
            try comm.barrier()
        }
        return checks
    }

    // MARK: - Bandwidth

    /// Median seconds per in-place SUM allreduce of `mb` MiB of Float, as one call and as
    /// 1M-element buckets (the time of a repetition is the slowest rank's).
    func measureBandwidth(_ comm: Communicator) throws -> (bytes: Int, plain: Double, bucketed: Double) {
        let count = mb * 1_048_576 / MemoryLayout<Float>.stride
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        buffer.initialize(repeating: 0)
        let bucketed = BucketedAllreduce(count: count, bucketElements: BucketedAllreduce.defaultBucketElements,
                                         communicator: comm)
        func median(_ body: () throws -> Void) throws -> Double {
            for _ in 0..<2 { try body() }  // warm-up
            var times: [Double] = []
            for _ in 0..<reps {
                try comm.barrier()
                let t0 = monotonicSeconds()
                try body()
                times.append(monotonicSeconds() - t0)
            }
            let slowest = try comm.allreduce(times, op: .max).sorted()
            return slowest.count % 2 == 1 ? slowest[slowest.count / 2]
                : (slowest[slowest.count / 2 - 1] + slowest[slowest.count / 2]) / 2
        }
        let plain = try median { try comm.allreduce(buffer, op: .sum) }
        let inBuckets = try median { try bucketed.reduce(buffer.baseAddress!) }
        return (count * MemoryLayout<Float>.stride, plain, inBuckets)
    }

    private func monotonicSeconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    // MARK: - Table

    func printTable(_ report: Report, checkOrder: [String]) {
        func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
        print("distrainer doctor: \(report.worldSize) rank\(report.worldSize == 1 ? "" : "s")")
        let hostWidth = max(4, report.hosts.map(\.host.count).max() ?? 4) + 2
        print(pad("rank", 6) + pad("host", hostWidth) + pad("local", 8) + pad("pid", 9) + "OPENBLAS_NUM_THREADS")
        for h in report.hosts {
            print(pad("\(h.rank)", 6) + pad(h.host, hostWidth) + pad("\(h.localRank)/\(h.localSize)", 8)
                  + pad("\(h.pid)", 9) + (h.openblasNumThreads ?? "(unset)"))
        }
        print("")
        for name in checkOrder {
            print("  \(report.checks[name] == true ? "PASS" : "FAIL")  \(name)")
        }
        for f in report.failures { print("  ! \(f)") }
        print("")
        if report.worldSize == 1 {
            print("allreduce bandwidth: n/a with 1 rank (collectives are local copies)")
        } else {
            print(String(format: "allreduce %d MiB in place: %.2f ms = %.2f GB/s (one call), %.2f ms = %.2f GB/s (4 MiB buckets)",
                     report.allreduceMB, report.allreduceMs, report.allreduceGbps,
                     report.bucketedAllreduceMs, report.bucketedAllreduceGbps))
        }
        print(report.allOK ? "all checks passed" : "SOME CHECKS FAILED")
    }
}
