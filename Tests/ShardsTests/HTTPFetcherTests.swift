import Foundation
import Shards
import Testing
import TestSupport

/// Quick retries and short time-outs so the fault cases finish in well under a second each.
func fastFetchOptions(attempts: Int = 3) -> FetchOptions {
    var o = FetchOptions()
    o.concurrency = 4
    o.connectTimeout = 2
    o.totalTimeout = 2
    o.maxAttempts = attempts
    o.backoffBase = 0.01
    o.backoffMax = 0.05
    return o
}

extension ServerTests {
    @Suite(.enabled(if: FaultServer.available, "python3 is needed for the HTTP fault server"))
    struct HTTPFetcherTests {
        let payload = TestFiles.bytes(5000, seed: 42)

        func failure(_ r: FetchResult, sourceLocation: SourceLocation = #_sourceLocation) -> FetchError? {
            switch r.result {
            case .success(let b):
                Issue.record("\(r.source): expected a failure, got \(b.count) bytes", sourceLocation: sourceLocation)
                return nil
            case .failure(let e): return e
            }
        }

        @Test func batchSucceedsAndReusesConnections() throws {
            let server = try FaultServer()
            defer { server.stop() }
            var expected: [String: [UInt8]] = [:]
            for i in 0..<24 {
                let bytes = TestFiles.bytes(1000 + i * 37, seed: UInt64(i))
                try server.put("f\(i).bin", bytes)
                expected[server.url("f\(i).bin")] = bytes
            }
            let fetcher = try HTTPFetcher(options: fastFetchOptions())
            let refs = (0..<24).map { server.url("f\($0).bin") } + [server.url("f3.bin")]   // one duplicate
            let results = fetcher.fetch(refs)
            #expect(results.count == 25)
            for (ref, r) in zip(refs, results) {
                #expect(r.source == ref)
                #expect(try r.get() == expected[ref], "\(ref)")
                #expect(r.attempts == 1)
            }
            // A second batch on the same fetcher reuses the kept connections.
            _ = fetcher.fetch((0..<8).map { server.url("f\($0).bin") })
            let stats = try server.stats()
            #expect(stats.requests["/f3.bin"] == 2, "the duplicate is fetched once per batch")
            #expect(stats.connections <= 4 + 1, "at most `concurrency` connections (+1 for /__stats): \(stats.connections)")
            #expect(fetcher.requestsSent == 32)
        }

        @Test func serverErrorsAreRetriedThenSucceed() throws {
            let server = try FaultServer()
            defer { server.stop() }
            try server.put("a.bin", payload)
            let fetcher = try HTTPFetcher(options: fastFetchOptions(attempts: 4))
            let r = fetcher.fetch([server.url("a.bin?fault=500&times=2")])[0]
            #expect(try r.get() == payload)
            #expect(r.attempts == 3)
            #expect(try server.count("/a.bin?fault=500&times=2") == 3)
        }

        @Test func persistentServerErrorFailsAfterAllAttempts() throws {
            let server = try FaultServer()
            defer { server.stop() }
            try server.put("a.bin", payload)
            let fetcher = try HTTPFetcher(options: fastFetchOptions(attempts: 3))
            let target = "a.bin?fault=500&times=100"
            let e = try #require(failure(fetcher.fetch([server.url(target)])[0]))
            #expect(e.reason == .http(status: 500) && e.attempts == 3)
            #expect(e.description.contains("http 500 after 3 attempts") && e.description.contains(server.url(target)), "\(e)")
            #expect(try server.count("/" + target) == 3)
        }

        @Test func tooManyRequestsHonoursRetryAfter() throws {
            let server = try FaultServer()
            defer { server.stop() }
            try server.put("a.bin", payload)
            let fetcher = try HTTPFetcher(options: fastFetchOptions())
            let t0 = Date()
            let r = fetcher.fetch([server.url("a.bin?fault=429&times=1&retry_after=1")])[0]
            let elapsed = Date().timeIntervalSince(t0)
            #expect(try r.get() == payload)
            #expect(r.attempts == 2)
            #expect(elapsed >= 0.95, "waited \(elapsed) s for Retry-After: 1 (back-off alone is ≤ 0.05 s)")
        }

        @Test func notFoundIsPermanent() throws {
            let server = try FaultServer()
            defer { server.stop() }
            let fetcher = try HTTPFetcher(options: fastFetchOptions())
            let e = try #require(failure(fetcher.fetch([server.url("missing.png")])[0]))
            #expect(e.reason == .http(status: 404) && e.attempts == 1)
            #expect(e.description == "\(server.url("missing.png")): http 404 (1 attempt)")
            #expect(try server.count("/missing.png") == 1)
        }

        @Test func connectionResetIsRetried() throws {
            let server = try FaultServer()
            defer { server.stop() }
            try server.put("a.bin", payload)
            let fetcher = try HTTPFetcher(options: fastFetchOptions())
            let ok = fetcher.fetch([server.url("a.bin?fault=reset&times=1")])[0]
            #expect(try ok.get() == payload && ok.attempts == 2)

            // A fresh fetcher: on a kept connection libcurl itself retries once, which would
            // blur the count of attempts seen by the server.
            let e = try #require(failure(try HTTPFetcher(options: fastFetchOptions()).fetch([server.url("a.bin?fault=reset")])[0]))
            guard case .connection = e.reason else { Issue.record("expected a connection failure: \(e)"); return }
            #expect(e.attempts == 3)
            #expect(try server.count("/a.bin?fault=reset") == 3)
        }

        @Test func truncatedBodyIsRetried() throws {
            let server = try FaultServer()
            defer { server.stop() }
            try server.put("a.bin", payload)
            let fetcher = try HTTPFetcher(options: fastFetchOptions())
            let ok = fetcher.fetch([server.url("a.bin?fault=truncate&times=2")])[0]
            #expect(try ok.get() == payload && ok.attempts == 3)

            let e = try #require(failure(fetcher.fetch([server.url("a.bin?fault=truncate")])[0]))
            #expect(e.reason == .truncatedBody && e.attempts == 3)
            #expect(e.description.contains("truncated body after 3 attempts"), "\(e)")
        }

        @Test func slowResponseTimesOut() throws {
            let server = try FaultServer()
            defer { server.stop() }
            try server.put("a.bin", payload)
            var o = fastFetchOptions(attempts: 2)
            o.totalTimeout = 0.3
            let fetcher = try HTTPFetcher(options: o)
            let t0 = Date()
            let e = try #require(failure(fetcher.fetch([server.url("a.bin?fault=slow&delay=3")])[0]))
            #expect(e.reason == .timeout && e.attempts == 2)
            #expect(e.description.contains("timeout after 2 attempts"), "\(e)")
            #expect(Date().timeIntervalSince(t0) < 2, "gave up on time")
            // Slow once, then fast: the retry succeeds.
            let ok = fetcher.fetch([server.url("a.bin?fault=slow&delay=3&times=1")])[0]
            #expect(try ok.get() == payload && ok.attempts == 2)
        }

        @Test func responseSizeIsBounded() throws {
            let server = try FaultServer()
            defer { server.stop() }
            var o = fastFetchOptions()
            o.maxResponseBytes = 100_000
            let fetcher = try HTTPFetcher(options: o)
            let results = fetcher.fetch([server.url("x?fault=big&size=300000"),                // Content-Length
                                         server.url("y?fault=big&size=3000000&chunked=1"),     // streamed: aborted
                                         server.url("z?fault=big&size=100000")])               // exactly the limit
            for r in results.prefix(2) {
                let e = try #require(failure(r))
                #expect(e.reason == .tooLarge(limit: 100_000) && e.attempts == 1, "\(e)")
            }
            #expect(try results[2].get().count == 100_000)
        }

        @Test func redirectsAreBounded() throws {
            let server = try FaultServer()
            defer { server.stop() }
            try server.put("a.bin", payload)
            let fetcher = try HTTPFetcher(options: fastFetchOptions())
            #expect(try fetcher.fetch(server.url("r?fault=redirect&to=/a.bin")) == payload)
            let e = try #require(failure(fetcher.fetch([server.url("loop?fault=redirect_loop")])[0]))
            #expect(e.reason == .tooManyRedirects(limit: 5) && e.attempts == 1, "\(e)")
            // A redirect to a file: URL is refused (only http/https are followed).
            let f = try #require(failure(fetcher.fetch([server.url("r?fault=redirect&to=file:///etc/passwd")])[0]))
            guard case .disallowedScheme = f.reason else { Issue.record("expected a refused scheme: \(f)"); return }
        }

        @Test func nonImageAndBombBodiesFailInTheDecoder() throws {
            let server = try FaultServer()
            defer { server.stop() }
            try server.put("a.bin", payload)
            let fetcher = try HTTPFetcher(options: fastFetchOptions())
            let page = server.url("a.png?fault=notimage"), bomb = server.url("b.png?fault=bomb")
            let results = fetcher.fetch([page, bomb])
            #expect(throws: ImageError.unsupportedFormat(source: page, format: "text, not an image (starts with \"<!DOCTYPE html><\")")) {
                try ImageDecoder.decode(try results[0].get(), channels: 3, source: page)
            }
            let bombBytes = try results[1].get()
            #expect(bombBytes.count < 200)
            #expect(throws: ImageError.tooLarge(source: bomb, width: 50_000, height: 50_000, limit: PNGCodec.defaultMaxPixels)) {
                try ImageDecoder.decode(bombBytes, channels: 3, source: bomb)
            }
        }

        @Test func perHostRateLimit() throws {
            let server = try FaultServer()
            defer { server.stop() }
            try server.put("a.bin", payload)
            var o = fastFetchOptions()
            o.maxRequestsPerSecond = 20
            let fetcher = try HTTPFetcher(options: o)
            let t0 = Date()
            let results = fetcher.fetch((0..<10).map { server.url("a.bin?n=\($0)") })
            let elapsed = Date().timeIntervalSince(t0)
            #expect(results.allSatisfy { (try? $0.get()) == payload })
            #expect(elapsed >= 0.44, "10 requests at 20/s take at least 0.45 s, took \(elapsed)")
            #expect(elapsed < 2)
        }
    }
}

/// Fetcher cases that need no server.
@Suite struct LocalFetchTests {
    @Test func pathsFileURLsAndRefusedSchemes() throws {
        let dir = try TestSupport.makeTempDir()
        defer { TestSupport.removeTree(dir) }
        let bytes = TestFiles.bytes(300, seed: 5)
        let file = dir.appendingPathComponent("a b.png")
        try TestFiles.write(bytes, to: file)
        let fetcher = try HTTPFetcher(options: fastFetchOptions())
        let fileURL = "file://" + file.path.replacingOccurrences(of: " ", with: "%20")
        let missing = dir.appendingPathComponent("none.png").path
        let results = fetcher.fetch([file.path, fileURL, missing, "ftp://host/a.png", "file://otherhost/a.png"])
        #expect(try results[0].get() == bytes)
        #expect(try results[1].get() == bytes)
        #expect(results[2].result == .failure(FetchError(source: missing, reason: .file(errno: ENOENT), attempts: 1)))
        #expect(results[3].result == .failure(FetchError(source: "ftp://host/a.png", reason: .disallowedScheme("ftp"), attempts: 0)))
        guard case .failure(let e) = results[4].result, case .invalidReference = e.reason else {
            Issue.record("a file URL on another host must be refused: \(results[4])"); return
        }

        var httpOnly = fastFetchOptions()
        httpOnly.allowedSchemes = ["https"]
        let strict = try HTTPFetcher(options: httpOnly)
        let r = strict.fetch([file.path, "http://127.0.0.1:1/a.png"])
        #expect(r[0].result == .failure(FetchError(source: file.path, reason: .disallowedScheme("file"), attempts: 0)))
        #expect(r[1].result == .failure(FetchError(source: "http://127.0.0.1:1/a.png", reason: .disallowedScheme("http"), attempts: 0)))

        var small = fastFetchOptions()
        small.maxResponseBytes = 299
        #expect(try HTTPFetcher(options: small).fetch([file.path])[0].result
                == .failure(FetchError(source: file.path, reason: .tooLarge(limit: 299), attempts: 1)))
    }

    @Test func connectionRefusedIsRetried() throws {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let fetcher = try HTTPFetcher(options: fastFetchOptions(attempts: 2))
        let r = fetcher.fetch(["http://127.0.0.1:1/a.png"])[0]
        guard case .failure(let e) = r.result, case .connection = e.reason else { Issue.record("expected a connection failure: \(r)"); return }
        #expect(e.attempts == 2)
    }

    @Test func badOptionsAreRejected() {
        var o = FetchOptions(); o.concurrency = 0
        #expect(throws: FetchConfigurationError.self) { try HTTPFetcher(options: o) }
        o = FetchOptions(); o.allowedSchemes = ["http", "gopher"]
        #expect(throws: FetchConfigurationError.self) { try HTTPFetcher(options: o) }
        o = FetchOptions(); o.maxRequestsPerSecond = 0
        #expect(throws: FetchConfigurationError.self) { try HTTPFetcher(options: o) }
    }
}
