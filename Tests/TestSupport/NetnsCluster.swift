import Foundation

/// Several "hosts" on this machine for multi-host MPI tests, made by `scripts/netns-cluster.sh`:
/// each host has its own network namespace (10.213.0.(i+1) on a private bridge), hostname, and
/// local disk (`disk(host)`, seen by that host — and only by it — at `localPath`). mpirun runs
/// on the first host and starts the others through `scripts/netns-agent.sh` (no ssh), with MPI
/// traffic restricted to the bridge's subnet.
///
///     let cluster = try NetnsCluster(hosts: ["node-a", "node-b"])
///     defer { cluster.stop() }
///     let r = try cluster.mpirun(ranks: 2, ["train", …])
///
/// `stop()` (also on deinit) kills every process left on the hosts and deletes the namespaces.
/// Needs root: where namespaces cannot be made, `unavailableReason` says why (tests skip).
public final class NetnsCluster: @unchecked Sendable {
    public let hosts: [String]
    public let dir: URL
    /// The path at which every host sees its own local disk.
    public let localPath: String
    public let state: String
    public static let subnet = "10.213.0.0/24"
    private var stopped = false

    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    public static let script = repo.appendingPathComponent("scripts/netns-cluster.sh").path
    public static let agent = repo.appendingPathComponent("scripts/netns-agent.sh").path

    /// Why namespaces cannot be made here (printed once), or nil when a probe cluster came up.
    public static let unavailableReason: String? = {
        let reason: String?
        if getuid() != 0 { reason = "not root" }
        else if !FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") && !onPath("mpirun") { reason = "mpirun not found" }
        else {
            do { let c = try NetnsCluster(hosts: ["probe"]); c.stop(); reason = nil }
            catch { reason = "\(error)" }
        }
        if let reason { print("NetnsCluster: network namespaces unavailable (\(reason)); multi-host tests are skipped") }
        return reason
    }()

    public static var available: Bool { unavailableReason == nil }

    static func onPath(_ tool: String) -> Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
            .contains { FileManager.default.isExecutableFile(atPath: "\($0)/\(tool)") }
    }

    public init(hosts: [String]) throws {
        self.hosts = hosts
        dir = try TestSupport.makeTempDir("netns")
        localPath = dir.appendingPathComponent("local").path
        state = dir.appendingPathComponent("state").path
        try FileManager.default.createDirectory(atPath: localPath, withIntermediateDirectories: true)
        let r = try TestSupport.run(Self.script, ["up", state, localPath] + hosts, timeout: 30)
        guard r.status == 0 else {
            _ = try? TestSupport.run(Self.script, ["down", state], timeout: 30)
            TestSupport.removeTree(dir)
            throw ClusterError("netns-cluster.sh up failed (\(r.status)): \(r.stderr)")
        }
        // Every host's own temp dir (TMPDIR for the ranks: caches, cv staging) on its own disk.
        for h in hosts { try FileManager.default.createDirectory(at: disk(h).appendingPathComponent("tmp"), withIntermediateDirectories: true) }
    }

    deinit { stop() }

    /// Host `host`'s local disk as this process sees it.
    public func disk(_ host: String) -> URL { URL(fileURLWithPath: state).appendingPathComponent("disk/\(host)") }

    /// `host`'s own view of `localPath/relative` (the same string on every host).
    public func local(_ relative: String) -> String { (localPath as NSString).appendingPathComponent(relative) }

    /// The address of host number `i`.
    public func address(_ i: Int) -> String { "10.213.0.\(i + 1)" }

    /// The command prefix that runs a program on `host`.
    public func command(on host: String) -> [String] { [Self.script, "exec", state, host] }

    /// Runs `executable args` on `host`.
    public func run(on host: String, _ executable: String, _ args: [String], timeout: TimeInterval = 240) throws -> TestSupport.RunResult {
        try TestSupport.run(Self.script, Array(command(on: host).dropFirst()) + [executable] + args,
                            environment: ["DISTRAINER_NETNS_STATE": state], timeout: timeout)
    }

    /// `mpirun` started on the first host over `hosts` (one slot line each, `slots` per host),
    /// ranks placed round-robin over the hosts (`--map-by node`) unless `mapBy` says otherwise;
    /// every rank gets TMPDIR = its host's own temp dir.
    public func mpirun(ranks: Int, slots: Int = 1, mapBy: String = "node", _ args: [String],
                       timeout: TimeInterval = 240) throws -> TestSupport.RunResult {
        let hostfile = dir.appendingPathComponent("hostfile")
        try (hosts.map { "\($0) slots=\(slots)" }.joined(separator: "\n") + "\n").write(to: hostfile, atomically: true, encoding: .utf8)
        let mpi = ["-n", "\(ranks)", "--hostfile", hostfile.path, "--map-by", mapBy, "--oversubscribe",
                   "--mca", "plm_rsh_agent", Self.agent,
                   "--mca", "oob_tcp_if_include", Self.subnet, "--mca", "btl_tcp_if_include", Self.subnet,
                   "-x", "OPENBLAS_NUM_THREADS=1", "-x", "TMPDIR=\(local("tmp"))"]
        return try run(on: hosts[0], "mpirun", mpi + [TestSupport.distrainerPath] + args, timeout: timeout)
    }

    /// Kills what still runs on the hosts, deletes the namespaces and the cluster's folder.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        _ = try? TestSupport.run(Self.script, ["down", state], timeout: 30)
        TestSupport.removeTree(dir)
    }

    struct ClusterError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }
}
