import Foundation

/// `Tests/Fixtures/fault_server.py` run as a child process for one test: it serves the files
/// of its own fresh temporary folder on 127.0.0.1 (a free port) and injects faults chosen by
/// the query string (see the script). `stop()` (also run on deinit) ends it and removes the
/// folder; the script also exits by itself when its stdin pipe closes or after `maxSeconds`.
///
///     let server = try FaultServer()
///     defer { server.stop() }
///     try server.put("a.png", bytes)
///     fetch(server.url("a.png?fault=500&times=2"))
///     #expect(try server.count("/a.png?fault=500&times=2") == 3)
public final class FaultServer: @unchecked Sendable {
    public let root: URL
    public let port: Int
    private let process: Process
    private let stdin: Pipe
    private var stopped = false

    /// python3 on `PATH`, or nil (tests then skip with this reason printed).
    public static let python: String? = {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        for d in dirs {
            let p = "\(d)/python3"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        print("FaultServer: python3 not found on PATH; tests that need the HTTP fault server are skipped")
        return nil
    }()

    public static var available: Bool { python != nil }

    static let script: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/fault_server.py").path

    /// The address the server listens on (and its URLs name).
    public let host: String

    /// `launcher` runs the server through another program (e.g. `NetnsCluster.command(on:)`, to
    /// serve from inside a network namespace on `host`, one of its addresses).
    public init(maxSeconds: Int = 120, host: String = "127.0.0.1", launcher: [String] = []) throws {
        guard let python = Self.python else { throw ServerError("python3 not found") }
        self.host = host
        root = try TestSupport.makeTempDir("fault-server")
        process = Process()
        let command = launcher + [python, Self.script, root.path, String(maxSeconds), host]
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        stdin = Pipe()
        let out = Pipe()
        process.standardInput = stdin
        process.standardOutput = out
        process.standardError = FileHandle.standardError
        try process.run()

        // First line: "PORT <n>", within 10 s.
        let fd = out.fileHandleForReading.fileDescriptor
        var line = [UInt8]()
        let deadline = Date().addingTimeInterval(10)
        while !line.contains(0x0A) && Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 100) <= 0 { continue }
            var buf = [UInt8](repeating: 0, count: 64)
            let n = read(fd, &buf, 64)
            if n <= 0 { break }
            line += buf[0..<n]
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("PORT "), let p = Int(text.dropFirst(5).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate(); process.waitUntilExit()
            TestSupport.removeTree(root)
            throw ServerError("fault server did not report its port (got \"\(text)\")")
        }
        port = p
    }

    deinit { stop() }

    /// Ends the server process (and waits for it) and removes its folder.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        try? stdin.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        TestSupport.removeTree(root)
    }

    /// `http://HOST:PORT/` + `target` (a path with an optional query, no leading slash).
    public func url(_ target: String) -> String { "http://\(host):\(port)/\(target)" }

    /// Writes a file the server serves at `/name` (`name` may hold folders, e.g. `18/5/7.png`).
    public func put(_ name: String, _ bytes: [UInt8]) throws {
        let url = root.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(bytes).write(to: url)
    }

    /// The server's counters: requests per target (path + query as sent), connections accepted
    /// (this stats request's own connection included).
    public func stats() throws -> (requests: [String: Int], connections: Int) {
        let body = try rawGet("/__stats")
        guard let obj = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let requests = obj["requests"] as? [String: Int], let connections = obj["connections"] as? Int else {
            throw ServerError("bad /__stats answer")
        }
        return (requests, connections)
    }

    /// Requests the server saw for `target` (e.g. "/a.png?fault=500&times=2").
    public func count(_ target: String) throws -> Int { try stats().requests[target] ?? 0 }

    /// Zeroes the server's counters.
    public func resetStats() throws { _ = try rawGet("/__reset") }

    /// A minimal HTTP/1.0 GET over a plain socket, independent of the code under test.
    private func rawGet(_ path: String) throws -> [UInt8] {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw ServerError("socket: errno \(errno)") }
        defer { close(s) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr(host)   // (reachable only when the server shares this network namespace)
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else { throw ServerError("connect to fault server: errno \(errno)") }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let request = Array("GET \(path) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
        guard send(s, request, request.count, 0) == request.count else { throw ServerError("send failed") }
        var response = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(s, &buf, buf.count, 0)
            if n <= 0 { break }
            response += buf[0..<n]
        }
        guard let split = (0..<max(0, response.count - 3)).first(where: {
            response[$0] == 13 && response[$0 + 1] == 10 && response[$0 + 2] == 13 && response[$0 + 3] == 10
        }) else { throw ServerError("incomplete answer from fault server") }
        return Array(response[(split + 4)...])
    }

    struct ServerError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }
}
