import Foundation
import Testing
import TestSupport

/// Real runs of `distrainer doctor` as child processes: singleton, and under mpirun with 2 and
/// 4 ranks. Serialized (2 cores). Each run gets its own TMPDIR (OpenMPI's session directories
/// go there), removed afterwards.
@Suite(.serialized) struct DoctorMPITests {
    static let expectedChecks = [
        "allreduce_sum_float", "allreduce_max_float", "allreduce_min_float",
        "allreduce_sum_double", "allreduce_max_double", "allreduce_min_double",
        "allreduce_sum_int64", "allreduce_max_int64", "allreduce_min_int64",
        "allreduce_sum_int32", "allreduce_max_uint8",
        "broadcast_raw", "broadcast_bytes", "gather_fixed", "gather_bytes", "barrier",
        "split_even_odd", "iallreduce", "bucketed_allreduce", "overlapped_allreduce", "error_reporting",
    ]

    /// Runs `body` with an environment whose TMPDIR is a fresh directory, removed afterwards.
    func withIsolatedTmp<R>(_ body: ([String: String]) throws -> R) throws -> R {
        let dir = try TestSupport.makeTempDir("dist-doctor")
        defer { TestSupport.removeTree(dir) }
        return try body(["TMPDIR": dir.path])
    }

    /// The JSON line rank 0 printed (the last stdout line that parses as a JSON object).
    func report(_ result: TestSupport.RunResult) throws -> [String: Any] {
        for line in result.stdout.split(separator: "\n").reversed() where line.hasPrefix("{") {
            if let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { return obj }
        }
        Issue.record("no JSON line in stdout:\n\(result.stdout)\nstderr:\n\(result.stderr)")
        throw CancellationError()
    }

    func expectHealthy(_ result: TestSupport.RunResult, ranks: Int) throws {
        #expect(result.status == 0, "exit \(result.status), stderr:\n\(result.stderr)")
        let json = try report(result)
        #expect(json["world_size"] as? Int == ranks)
        #expect(json["all_ok"] as? Bool == true)
        let checks = try #require(json["checks"] as? [String: Bool])
        #expect(Set(checks.keys) == Set(Self.expectedChecks))
        for (name, ok) in checks { #expect(ok, "check \(name) failed") }
        #expect((json["failures"] as? [Any])?.isEmpty == true)
        let hosts = try #require(json["hosts"] as? [[String: Any]])
        #expect(hosts.count == ranks)
        #expect(hosts.map { $0["rank"] as? Int } == (0..<ranks).map { $0 })
        #expect(Set(hosts.compactMap { $0["pid"] as? Int }).count == ranks)
        for h in hosts {
            #expect(h["size"] as? Int == ranks)
            #expect(!((h["host"] as? String) ?? "").isEmpty)
            #expect(h.keys.contains("openblas_num_threads"))
            #expect((h["local_rank"] as? Int).map { $0 >= 0 && $0 < ranks } == true)
        }
        let gbps = try #require(json["allreduce_gbps"] as? Double)
        #expect(gbps > 0 && gbps.isFinite)
    }

    @Test func singletonWithoutMpirun() throws {
        let r = try withIsolatedTmp { try TestSupport.distrainer(["doctor", "--json", "--mb", "1"], environment: $0, timeout: 120) }
        try expectHealthy(r, ranks: 1)
    }

    @Test func twoRanks() throws {
        let r = try withIsolatedTmp { try TestSupport.mpirun(2, ["doctor", "--json"], environment: $0, timeout: 180) }
        try expectHealthy(r, ranks: 2)
        // mpirun -x OPENBLAS_NUM_THREADS=1 reaches every rank.
        let hosts = try #require(try report(r)["hosts"] as? [[String: Any]])
        #expect(hosts.allSatisfy { $0["openblas_num_threads"] as? String == "1" })
        #expect(hosts.map { $0["local_size"] as? Int } == [2, 2])
    }

    @Test func fourRanksOversubscribed() throws {
        let r = try withIsolatedTmp { try TestSupport.mpirun(4, ["doctor", "--json", "--mb", "4"], environment: $0, timeout: 240) }
        try expectHealthy(r, ranks: 4)
    }

    @Test func humanReadableTable() throws {
        let r = try withIsolatedTmp { try TestSupport.mpirun(2, ["doctor", "--mb", "1"], environment: $0, timeout: 180) }
        #expect(r.status == 0, "stderr:\n\(r.stderr)")
        #expect(r.stdout.contains("distrainer doctor: 2 ranks"))
        #expect(r.stdout.contains("PASS  split_even_odd"))
        #expect(r.stdout.contains("GB/s"))
        #expect(r.stdout.contains("all checks passed"))
        #expect(!r.stdout.contains("FAIL"))
    }

    /// A check failing on one rank makes the whole report fail, naming the check and the rank.
    @Test func failedCheckIsReportedAndExitsNonZero() throws {
        let r = try withIsolatedTmp {
            try TestSupport.mpirun(2, ["doctor", "--json", "--mb", "1", "--fail-check", "gather_bytes"],
                                   environment: $0, timeout: 180)
        }
        #expect(r.status != 0)
        let json = try report(r)
        #expect(json["all_ok"] as? Bool == false)
        let checks = try #require(json["checks"] as? [String: Bool])
        #expect(checks["gather_bytes"] == false)
        #expect(checks.filter { !$0.value }.count == 1)
        #expect(json["failures"] as? [String] == ["gather_bytes failed on rank 1"])
    }

    /// An MPI error on one rank is reported with rank and operation, and MPI_Abort ends the
    /// whole job instead of leaving rank 0 waiting in the next collective.
    @Test func mpiErrorOnOneRankAbortsTheJob() throws {
        let start = Date()
        let r = try withIsolatedTmp {
            try TestSupport.mpirun(2, ["doctor", "--json", "--inject-mpi-error"], environment: $0, timeout: 120)
        }
        #expect(Date().timeIntervalSince(start) < 60)
        #expect(r.status != 0)
        #expect(r.stderr.contains("rank 1: MPI_Bcast failed (code"), "stderr:\n\(r.stderr)")
        #expect(r.stderr.contains("MPI_ERR_ROOT"))
        #expect(!r.stdout.contains("\"all_ok\""))
    }
}
