import CCurl
import Foundation

/// How `HTTPFetcher` talks to servers. The defaults suit a trainer reading images from a web
/// server or object store over HTTP(S).
public struct FetchOptions: Sendable, Equatable {
    /// Transfers in flight at once (curl multi); connections are kept and reused between them.
    public var concurrency = 16
    /// Seconds to establish a connection.
    public var connectTimeout = 5.0
    /// Seconds for one whole attempt (connect + redirects + body).
    public var totalTimeout = 30.0
    /// Requests started per second per host (retries included); nil: no limit.
    public var maxRequestsPerSecond: Double?
    /// Attempts per reference, the first included, for failures that may pass: time-outs,
    /// connection errors, truncated bodies, 5xx and 429.
    public var maxAttempts = 4
    /// Seconds before the first retry; doubles after each failure up to `backoffMax`, then a
    /// random jitter keeps 50–100 % of it (so ranks that failed together do not retry together).
    public var backoffBase = 0.25
    public var backoffMax = 8.0
    /// A server's `Retry-After` (on 429 / 503) is honoured up to this many seconds.
    public var maxRetryAfter = 60.0
    /// Bodies longer than this are aborted (`FetchError.Reason.tooLarge`); also the cap on
    /// local files.
    public var maxResponseBytes = 32 << 20
    /// Redirects followed per attempt (to http/https only).
    public var maxRedirects = 5
    /// URL schemes accepted, among `http`, `https` and `file` (`file` also covers plain paths).
    public var allowedSchemes: Set<String> = ["http", "https", "file"]
    public var userAgent = "distrainer"

    public init() {}

    /// Checks the values (every count and time positive).
    public func validate() throws {
        func bad(_ what: String) -> FetchConfigurationError { FetchConfigurationError(description: what) }
        guard concurrency >= 1 else { throw bad("fetch concurrency must be at least 1, got \(concurrency)") }
        guard connectTimeout > 0, totalTimeout > 0 else { throw bad("fetch time-outs must be positive") }
        guard maxAttempts >= 1 else { throw bad("fetch attempts must be at least 1, got \(maxAttempts)") }
        guard backoffBase >= 0, backoffMax >= 0, maxRetryAfter >= 0 else { throw bad("fetch back-off times must be >= 0") }
        if let r = maxRequestsPerSecond, !(r > 0) { throw bad("maximum requests per second must be positive, got \(r)") }
        guard maxResponseBytes >= 1 else { throw bad("maximum response size must be at least 1 byte") }
        guard maxRedirects >= 0 else { throw bad("maximum redirects must be >= 0") }
        let unknown = allowedSchemes.subtracting(["http", "https", "file"])
        guard unknown.isEmpty else { throw bad("unsupported schemes in the allowed list: \(unknown.sorted().joined(separator: ", "))") }
    }
}

/// A fetch configuration that cannot work.
public struct FetchConfigurationError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// The outcome for one reference of a batch.
public struct FetchResult: Sendable {
    /// The path or URL as given.
    public var source: String
    /// Attempts made (1 for local files).
    public var attempts: Int
    public var result: Result<[UInt8], FetchError>

    /// The bytes, or the failure thrown.
    public func get() throws(FetchError) -> [UInt8] { try result.get() }
}

/// Gets the bytes of images named by a plain path, a `file:` URL or an `http(s)://` URL.
/// Local files are read directly; URLs go through libcurl's multi interface: up to
/// `concurrency` transfers in flight, connections reused, per-host request rate limited,
/// retries with exponential back-off and jitter, bounded redirects and response size.
///
///     let fetcher = try HTTPFetcher(options: opts)
///     for r in fetcher.fetch(["https://host/a.jpg", "/data/b.png"]) {
///         switch r.result { case .success(let bytes): … case .failure(let e): print(e) }
///     }
///
/// A body cut short without a `Content-Length` (connection closed early) cannot be told from a
/// complete one here; the image decoder then reports it as truncated.
///
/// Thread safety: calls are serialised by a lock (one batch runs at a time, with all its
/// transfers concurrent inside); give each loader thread its own fetcher for parallel batches.
public final class HTTPFetcher: @unchecked Sendable {
    public let options: FetchOptions
    private let lock = NSLock()
    private let multi: UnsafeMutableRawPointer
    private var idle: [UnsafeMutableRawPointer] = []   // easy handles kept for reuse
    private var allHandles: [UnsafeMutableRawPointer] = []
    private var nextSlot: [String: UInt64] = [:]       // host → earliest next request (ns)
    private let protocols: String

    // Counters, updated by the batch that holds `lock`.
    private var sent = 0
    private var received = 0

    /// Requests sent (each attempt counts) since creation.
    public var requestsSent: Int { lock.lock(); defer { lock.unlock() }; return sent }
    /// Body bytes received (successful responses) since creation.
    public var bytesReceived: Int { lock.lock(); defer { lock.unlock() }; return received }

    private static let globalInit: Bool = curl_global_init(ccurl_global_default()) == CURLE_OK

    public init(options: FetchOptions = FetchOptions()) throws {
        try options.validate()
        guard Self.globalInit else { throw FetchConfigurationError(description: "libcurl global initialisation failed") }
        guard let m = curl_multi_init() else { throw FetchConfigurationError(description: "curl_multi_init failed") }
        multi = m
        self.options = options
        protocols = options.allowedSchemes.intersection(["http", "https"]).sorted().joined(separator: ",")
        _ = ccurl_multi_setopt_long(m, CURLMOPT_MAXCONNECTS, max(options.concurrency, 4))
    }

    deinit {
        for h in allHandles { curl_easy_cleanup(h) }
        curl_multi_cleanup(multi)
    }

    /// Fetches one reference (see `fetch(_:)` for the rules).
    public func fetch(_ reference: String) throws(FetchError) -> [UInt8] {
        try fetch([reference])[0].get()
    }

    /// Fetches every reference concurrently; results come back in the same order. Duplicates
    /// are fetched once.
    public func fetch(_ references: [String]) -> [FetchResult] {
        lock.lock()
        defer { lock.unlock() }
        var results = [FetchResult?](repeating: nil, count: references.count)
        var firstIndex: [String: Int] = [:]
        var jobs: [Job] = []
        for (i, ref) in references.enumerated() {
            if firstIndex[ref] != nil { continue }
            firstIndex[ref] = i
            switch Self.classify(ref, allowed: options.allowedSchemes) {
            case let .local(path): results[i] = readLocal(ref, path: path)
            case let .remote(host): jobs.append(Job(index: i, url: ref, host: host))
            case let .refused(reason): results[i] = FetchResult(source: ref, attempts: 0, result: .failure(FetchError(source: ref, reason: reason, attempts: 0)))
            }
        }
        if !jobs.isEmpty { run(jobs) { results[$0] = $1 } }
        return references.enumerated().map { i, ref in
            if let r = results[i] { return r }
            // A duplicate: the first occurrence's result (always filled by now).
            return results[firstIndex[ref] ?? i] ?? FetchResult(source: ref, attempts: 0, result: .failure(
                FetchError(source: ref, reason: .invalidReference(detail: "internal: no result"), attempts: 0)))
        }
    }

    // MARK: - References

    enum Kind: Equatable {
        case local(path: String)
        case remote(host: String)
        case refused(FetchError.Reason)
    }

    /// What `ref` names (as `ImageReference.parse` classifies it, the one classifier of
    /// references), or why it is refused: a scheme outside `allowed` (`file` covers plain
    /// paths too) or a malformed reference.
    static func classify(_ ref: String, allowed: Set<String>) -> Kind {
        if ref.isEmpty { return .refused(.invalidReference(detail: "empty reference")) }
        let scheme = ImageReference.scheme(of: ref) ?? "file"
        switch ImageReference.parse(ref) {
        case let .success(.path(path)), let .success(.file(path)):
            return allowed.contains("file") ? .local(path: path) : .refused(.disallowedScheme("file"))
        case let .success(.remote(url)):
            guard allowed.contains(scheme) else { return .refused(.disallowedScheme(scheme)) }
            return .remote(host: ImageReference.host(ofRemote: url))
        case let .failure(problem):
            if problem.reason == ImageReference.unsupportedScheme { return .refused(.disallowedScheme(scheme)) }
            return .refused(.invalidReference(detail: "\(problem.reason): \(problem.detail)"))
        }
    }

    private func readLocal(_ ref: String, path: String) -> FetchResult {
        var st = stat()
        if stat(path, &st) == 0, Int(st.st_size) > options.maxResponseBytes {
            return FetchResult(source: ref, attempts: 1, result: .failure(FetchError(source: ref, reason: .tooLarge(limit: options.maxResponseBytes), attempts: 1)))
        }
        do {
            let bytes = try ImageFile.readBytes(path: path)
            return FetchResult(source: ref, attempts: 1, result: .success(bytes))
        } catch let ImageError.io(_, e) {
            return FetchResult(source: ref, attempts: 1, result: .failure(FetchError(source: ref, reason: .file(errno: e), attempts: 1)))
        } catch {
            return FetchResult(source: ref, attempts: 1, result: .failure(FetchError(source: ref, reason: .file(errno: EIO), attempts: 1)))
        }
    }

    // MARK: - Transfers

    /// One reference being fetched, across its attempts.
    final class Job {
        let index: Int
        let url: String
        let host: String
        var attempts = 0
        var notBefore: UInt64 = 0
        // Per attempt, reached from the write callback through an unretained pointer.
        var body: [UInt8] = []
        var limit = 0
        var overLimit = false
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

        init(index: Int, url: String, host: String) {
            self.index = index; self.url = url; self.host = host
            errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        }
        deinit { errorBuffer.deallocate() }
    }

    /// Appends received bytes to the job's body; returning less than asked aborts the transfer.
    private static let writeBody: ccurl_data_callback = { data, size, count, context in
        guard let context else { return 0 }
        let job = Unmanaged<Job>.fromOpaque(context).takeUnretainedValue()
        let n = size * count
        if n == 0 { return 0 }
        guard let data else { return 0 }
        if job.body.count + n > job.limit { job.overLimit = true; return 0 }
        job.body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: n))
        return n
    }

    private static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Runs the multi loop until every job has a result.
    private func run(_ jobs: [Job], deliver: (Int, FetchResult) -> Void) {
        var pending = jobs
        var active: [UnsafeMutableRawPointer: Job] = [:]
        let spacing: UInt64? = options.maxRequestsPerSecond.map { UInt64(1e9 / $0) }

        while !pending.isEmpty || !active.isEmpty {
            // Start what may start: free slot, back-off elapsed, host's rate allows.
            let t = Self.now()
            var i = 0
            while active.count < options.concurrency && i < pending.count {
                let job = pending[i]
                if job.notBefore > t { i += 1; continue }
                if let spacing {
                    let slot = nextSlot[job.host] ?? 0
                    if slot > t { i += 1; continue }
                    nextSlot[job.host] = max(slot, t) + spacing
                }
                pending.remove(at: i)
                guard let easy = start(job) else {
                    deliver(job.index, FetchResult(source: job.url, attempts: job.attempts, result: .failure(FetchError(
                        source: job.url, reason: .transfer(code: Int(CURLE_OUT_OF_MEMORY.rawValue), detail: "curl_easy_init failed"),
                        attempts: job.attempts))))
                    continue
                }
                active[easy] = job
            }

            var running: Int32 = 0
            _ = curl_multi_perform(multi, &running)
            var finished = false
            var left: Int32 = 0
            while let msg = curl_multi_info_read(multi, &left) {
                var easyOut: UnsafeMutableRawPointer?
                var code = CURLE_OK
                guard ccurl_msg_done(msg, &easyOut, &code) != 0, let easy = easyOut, let job = active.removeValue(forKey: easy) else { continue }
                finished = true
                let outcome = finish(job, easy: easy, code: code)
                curl_multi_remove_handle(multi, easy)
                idle.append(easy)
                switch outcome {
                case let .done(result): deliver(job.index, result)
                case let .retry(after): job.notBefore = Self.now() + after; pending.append(job)
                }
            }
            if finished { continue }

            // Wait for socket activity, or until the next pending job may start.
            var waitMs = 100
            if !pending.isEmpty {
                let t2 = Self.now()
                var earliest = UInt64.max
                for job in pending {
                    var ready = job.notBefore
                    if spacing != nil { ready = max(ready, nextSlot[job.host] ?? 0) }
                    earliest = min(earliest, ready)
                }
                if active.count < options.concurrency {
                    waitMs = earliest <= t2 ? 0 : min(waitMs, Int((earliest - t2 + 999_999) / 1_000_000))
                }
            }
            if waitMs > 0 { _ = curl_multi_poll(multi, nil, 0, Int32(waitMs), nil) }
        }
    }

    /// Configures an easy handle for `job`'s next attempt and adds it to the multi handle.
    private func start(_ job: Job) -> UnsafeMutableRawPointer? {
        let easy: UnsafeMutableRawPointer
        if let h = idle.popLast() {
            curl_easy_reset(h)
            easy = h
        } else {
            guard let h = curl_easy_init() else { return nil }   // out of memory
            allHandles.append(h)
            easy = h
        }
        job.attempts += 1
        job.body.removeAll(keepingCapacity: true)
        job.limit = options.maxResponseBytes
        job.overLimit = false
        job.errorBuffer[0] = 0
        sent += 1

        _ = ccurl_setopt_string(easy, CURLOPT_URL, job.url)
        _ = ccurl_setopt_string(easy, CURLOPT_PROTOCOLS_STR, protocols)
        _ = ccurl_setopt_string(easy, CURLOPT_REDIR_PROTOCOLS_STR, protocols)
        _ = ccurl_setopt_long(easy, CURLOPT_FOLLOWLOCATION, options.maxRedirects > 0 ? 1 : 0)
        _ = ccurl_setopt_long(easy, CURLOPT_MAXREDIRS, options.maxRedirects)
        _ = ccurl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, max(1, Int(options.connectTimeout * 1000)))
        _ = ccurl_setopt_long(easy, CURLOPT_TIMEOUT_MS, max(1, Int(options.totalTimeout * 1000)))
        _ = ccurl_setopt_long(easy, CURLOPT_NOSIGNAL, 1)
        _ = ccurl_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1)
        _ = ccurl_setopt_off(easy, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(options.maxResponseBytes))
        _ = ccurl_setopt_string(easy, CURLOPT_USERAGENT, options.userAgent)
        _ = ccurl_setopt_pointer(easy, CURLOPT_ERRORBUFFER, job.errorBuffer)
        _ = ccurl_setopt_data_callback(easy, CURLOPT_WRITEFUNCTION, Self.writeBody)
        _ = ccurl_setopt_pointer(easy, CURLOPT_WRITEDATA, Unmanaged.passUnretained(job).toOpaque())
        curl_multi_add_handle(multi, easy)
        return easy
    }

    enum Outcome {
        case done(FetchResult)
        case retry(afterNanoseconds: UInt64)
    }

    /// Classifies a finished attempt: success, permanent failure, or a retry after a delay.
    private func finish(_ job: Job, easy: UnsafeMutableRawPointer, code: CURLcode) -> Outcome {
        var status = 0
        var retryAfter: curl_off_t = 0
        var statusLong = 0
        _ = ccurl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &statusLong)
        status = statusLong
        _ = ccurl_getinfo_off(easy, CURLINFO_RETRY_AFTER, &retryAfter)
        let detail = String(cString: job.errorBuffer)
        let curlMessage = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail

        let reason: FetchError.Reason
        var retryable = false
        switch code {
        case CURLE_OK:
            if (200..<300).contains(status) {
                received += job.body.count
                let bytes = job.body
                job.body = []
                return .done(FetchResult(source: job.url, attempts: job.attempts, result: .success(bytes)))
            }
            reason = .http(status: status)
            retryable = status == 429 || (500..<600).contains(status)
        case CURLE_OPERATION_TIMEDOUT:
            reason = .timeout; retryable = true
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY,
             CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING:
            reason = .connection(detail: curlMessage); retryable = true
        case CURLE_PARTIAL_FILE:
            reason = .truncatedBody; retryable = true
        case CURLE_FILESIZE_EXCEEDED:
            reason = .tooLarge(limit: options.maxResponseBytes)
        case CURLE_WRITE_ERROR where job.overLimit:
            reason = .tooLarge(limit: options.maxResponseBytes)
        case CURLE_TOO_MANY_REDIRECTS:
            reason = .tooManyRedirects(limit: options.maxRedirects)
        case CURLE_UNSUPPORTED_PROTOCOL:
            reason = .disallowedScheme(curlMessage)
        case CURLE_URL_MALFORMAT:
            reason = .invalidReference(detail: curlMessage)
        default:
            reason = .transfer(code: Int(code.rawValue), detail: curlMessage)
        }
        job.body = []
        if retryable && job.attempts < options.maxAttempts {
            var delay = min(options.backoffMax, options.backoffBase * pow(2, Double(job.attempts - 1)))
            delay *= Double.random(in: 0.5...1.0)
            if retryAfter > 0 && (status == 429 || status == 503) {
                delay = max(delay, min(Double(retryAfter), options.maxRetryAfter))
            }
            return .retry(afterNanoseconds: UInt64(delay * 1e9))
        }
        return .done(FetchResult(source: job.url, attempts: job.attempts,
                                 result: .failure(FetchError(source: job.url, reason: reason, attempts: job.attempts))))
    }
}
