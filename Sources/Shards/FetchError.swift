#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why `HTTPFetcher` could not get the bytes of one reference, after how many attempts.
///
///     "https://host/a.jpg: http 404 (1 attempt)"
///     "https://host/b.jpg: timeout after 3 attempts (Operation timed out after 2000 milliseconds ...)"
public struct FetchError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Reason: Equatable, Sendable {
        /// The server answered with this status (after following redirects): 4xx other than 429
        /// are permanent; 5xx and 429 were retried.
        case http(status: Int)
        /// The connect or total time-out expired (retried).
        case timeout
        /// The connection failed, was reset or closed without an answer, or the host did not
        /// resolve (retried); `detail` is libcurl's message.
        case connection(detail: String)
        /// The body ended before its announced length (retried).
        case truncatedBody
        /// The body is longer than the configured maximum; the transfer was aborted.
        case tooLarge(limit: Int)
        /// More redirects than allowed (`limit`).
        case tooManyRedirects(limit: Int)
        /// A scheme that is not allowed (e.g. `ftp`, or a redirect to `file:`).
        case disallowedScheme(String)
        /// Not a usable path or URL.
        case invalidReference(detail: String)
        /// A local file (plain path or `file:` URL) could not be read.
        case file(errno: Int32)
        /// Any other libcurl failure (TLS, protocol errors, ...); not retried.
        case transfer(code: Int, detail: String)
    }

    /// The path or URL as given.
    public var source: String
    public var reason: Reason
    /// Attempts made (1 when the first failure was permanent, 0 when the reference was refused
    /// before any request).
    public var attempts: Int

    public init(source: String, reason: Reason, attempts: Int) {
        self.source = source
        self.reason = reason
        self.attempts = attempts
    }

    /// The reason in a few words, e.g. `http 404`, `timeout`, `truncated body`, `too large`.
    public var summary: String {
        switch reason {
        case let .http(s): return "http \(s)"
        case .timeout: return "timeout"
        case .connection: return "connection failed"
        case .truncatedBody: return "truncated body"
        case let .tooLarge(l): return "too large (over \(l) bytes)"
        case let .tooManyRedirects(l): return "too many redirects (over \(l))"
        case let .disallowedScheme(s): return "scheme not allowed (\(s))"
        case .invalidReference: return "invalid reference"
        case let .file(e): return String(cString: strerror(e))
        case let .transfer(c, _): return "transfer failed (curl \(c))"
        }
    }

    public var description: String {
        var detail: String?
        switch reason {
        case let .connection(d), let .invalidReference(d), let .transfer(_, d): detail = d
        default: detail = nil
        }
        let tries = attempts == 0 ? "(not attempted)" : attempts == 1 ? "(1 attempt)" : "after \(attempts) attempts"
        return "\(source): \(summary) \(tries)" + (detail.map { $0.isEmpty ? "" : " (\($0))" } ?? "")
    }
}
