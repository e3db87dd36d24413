import Foundation

/// Helpers shared by the test targets: temporary folders, the built `distrainer` executable,
/// and running it (optionally under `mpirun`) as a real child process.
public enum TestSupport {
    /// A fresh, uniquely named temporary directory (removed by the caller with `removeTree`).
    public static func makeTempDir(_ prefix: String = "distrainer-test") throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    public static func removeTree(_ url: URL) { try? FileManager.default.removeItem(at: url) }

    /// The `distrainer` executable built next to the test bundle (`.build/<config>/distrainer`),
    /// or `$DISTRAINER_BIN` when set.
    public static var distrainerPath: String {
        if let p = ProcessInfo.processInfo.environment["DISTRAINER_BIN"], !p.isEmpty { return p }
        var dir = URL(fileURLWithPath: CommandLine.arguments.first ?? ".").deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("distrainer").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        for b in Bundle.allBundles {
            let candidate = b.bundleURL.deletingLastPathComponent().appendingPathComponent("distrainer").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return "distrainer"
    }

    /// Result of a finished child process.
    public struct RunResult: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs `executable args` to completion with a time limit (the process group is killed
    /// on time-out), capturing stdout and stderr.
    public static func run(_ executable: String, _ args: [String], environment: [String: String] = [:],
                           timeout: TimeInterval = 300, cwd: URL? = nil) throws -> RunResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable.hasPrefix("/") ? executable : "/usr/bin/env")
        p.arguments = executable.hasPrefix("/") ? args : [executable] + args
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OPENBLAS_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] ?? "1"
        for (k, v) in environment { env[k] = v }
        p.environment = env
        if let cwd { p.currentDirectoryURL = cwd }
        let dir = try makeTempDir("distrainer-run")
        defer { removeTree(dir) }
        let outURL = dir.appendingPathComponent("out"), errURL = dir.appendingPathComponent("err")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning {
            kill(-p.processIdentifier, SIGKILL)
            p.terminate()
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        p.waitUntilExit()
        try out.close(); try err.close()
        let so = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let se = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return RunResult(status: p.terminationStatus, stdout: so, stderr: se)
    }

    /// Runs `distrainer args` under `mpirun -n ranks` (with `--oversubscribe` and root allowed).
    public static func mpirun(_ ranks: Int, _ args: [String], environment: [String: String] = [:],
                              timeout: TimeInterval = 300) throws -> RunResult {
        try run("mpirun", ["-n", "\(ranks)", "--oversubscribe", "--allow-run-as-root",
                           "-x", "OPENBLAS_NUM_THREADS=1", distrainerPath] + args,
                environment: environment, timeout: timeout)
    }

    /// Runs `distrainer args` directly (a singleton, no mpirun).
    public static func distrainer(_ args: [String], environment: [String: String] = [:],
                                  timeout: TimeInterval = 300) throws -> RunResult {
        try run(distrainerPath, args, environment: environment, timeout: timeout)
    }
}
