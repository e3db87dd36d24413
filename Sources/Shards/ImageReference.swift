/// How a manifest line names its image: a file path (absolute, or relative to the manifest's
/// folder), a `file:` URL, or an `http(s)://` URL.
///
///     ImageReference.parse("imgs/a.png")                     // .path("imgs/a.png")
///     ImageReference.parse("file:///data/a%20b.png")         // .file(path: "/data/a b.png")
///     ImageReference.parse("https://example.org/x.jpg")      // .remote(url: …)
///     ImageReference.parse("ftp://example.org/x.jpg")        // failure: unsupported URL scheme
///
/// A reference is a URL when it starts with a scheme of two or more characters and a colon
/// (`[A-Za-z][A-Za-z0-9+.-]+:`); only `file`, `http` and `https` are accepted. Anything else is
/// a path (so a one-letter "scheme" such as `C:` is read as a path).
public enum ImageReference: Sendable, Equatable {
    /// A path exactly as written.
    case path(String)
    /// The percent-decoded absolute path of a `file:` URL (`file:///p`, `file://localhost/p`, `file:/p`).
    case file(path: String)
    /// An `http://` or `https://` URL exactly as written.
    case remote(url: String)

    /// Why a reference was refused: `reason` is a stable category (`invalid URL`,
    /// `unsupported URL scheme`, `invalid path`), `detail` the specifics.
    public struct Problem: Error, Equatable, Sendable {
        public var reason: String
        public var detail: String
    }

    public var isRemote: Bool { if case .remote = self { return true } else { return false } }

    /// Classifies and validates `text` (non-empty).
    public static func parse(_ text: String) -> Result<ImageReference, Problem> {
        let bytes = Array(text.utf8)
        if bytes.contains(0) { return .failure(Problem(reason: "invalid path", detail: "contains a NUL character")) }
        guard let schemeEnd = schemeLength(bytes) else { return .success(.path(text)) }
        let scheme = String(decoding: bytes[0..<schemeEnd], as: UTF8.self).lowercased()
        switch scheme {
        case "http", "https":
            if let problem = httpProblem(bytes, schemeEnd: schemeEnd) {
                return .failure(Problem(reason: "invalid URL", detail: problem))
            }
            return .success(.remote(url: text))
        case "file":
            return filePath(bytes, schemeEnd: schemeEnd).map { .file(path: $0) }
        default:
            return .failure(Problem(reason: unsupportedScheme, detail: "\"\(scheme)\" (use a path, file://, http:// or https://)"))
        }
    }

    /// The reason of a reference whose scheme is not `file`, `http` or `https`.
    public static let unsupportedScheme = "unsupported URL scheme"

    /// The lowercased scheme of a URL reference, or nil for a path.
    public static func scheme(of text: String) -> String? {
        let bytes = Array(text.utf8)
        return schemeLength(bytes).map { String(decoding: bytes[0..<$0], as: UTF8.self).lowercased() }
    }

    /// The lowercased authority of a well-formed http(s) URL without its user info (`host` or
    /// `host:port`): the key of per-host request rates.
    public static func host(ofRemote url: String) -> String {
        let b = Array(url.utf8)
        guard let schemeEnd = schemeLength(b), schemeEnd + 3 <= b.count else { return "" }
        var host = b[(schemeEnd + 3)...].prefix { $0 != 0x2F && $0 != 0x3F && $0 != 0x23 }
        if let at = host.lastIndex(of: 0x40) { host = host[(at + 1)...] }
        return String(decoding: host, as: UTF8.self).lowercased()
    }

    /// The length of a leading `scheme` (before its `:`), or nil when `bytes` is not a URL.
    static func schemeLength(_ bytes: [UInt8]) -> Int? {
        guard let first = bytes.first, isAlpha(first) else { return nil }
        var i = 1
        while i < bytes.count, isAlpha(bytes[i]) || isDigit(bytes[i]) || bytes[i] == 0x2B || bytes[i] == 0x2D || bytes[i] == 0x2E {
            i += 1
        }
        guard i >= 2, i < bytes.count, bytes[i] == UInt8(ascii: ":") else { return nil }
        return i
    }

    /// What is wrong with an http(s) URL, or nil when it is well formed: `//`, a non-empty host
    /// (registered name, IPv4 or `[IPv6]`), an optional numeric port ≤ 65535, no spaces or
    /// control characters, and `%` always followed by two hex digits. Non-ASCII (IRIs) is allowed.
    static func httpProblem(_ b: [UInt8], schemeEnd: Int) -> String? {
        var i = schemeEnd + 1
        guard i + 1 < b.count, b[i] == 0x2F, b[i + 1] == 0x2F else {
            return "expected \"//\" after the scheme"
        }
        for (k, c) in b.enumerated() {
            if c <= 0x20 || c == 0x7F { return c == 0x20 ? "space at character \(k + 1)" : "control character at character \(k + 1)" }
            switch c {
            case 0x22, 0x3C, 0x3E, 0x5C, 0x5E, 0x60, 0x7B, 0x7C, 0x7D:              // " < > \ ^ ` { | }
                return "character '\(Character(Unicode.Scalar(c)))' not allowed"
            default: break
            }
            if c == UInt8(ascii: "%") {
                guard k + 2 < b.count, isHex(b[k + 1]), isHex(b[k + 2]) else { return "bad percent escape at character \(k + 1)" }
            }
        }
        i += 2
        var end = i
        while end < b.count, b[end] != 0x2F, b[end] != 0x3F, b[end] != 0x23 { end += 1 }   // / ? #
        var authority = b[i..<end]
        if let at = authority.lastIndex(of: 0x40) { authority = authority[(at + 1)...] }   // drop userinfo@
        var host = authority, port: ArraySlice<UInt8> = []
        if authority.first == 0x5B {                                          // [IPv6]
            guard let close = authority.firstIndex(of: 0x5D) else { return "unterminated [IPv6] host" }
            host = authority[authority.startIndex...close]
            let rest = authority[(close + 1)...]
            if !rest.isEmpty {
                guard rest.first == 0x3A else { return "unexpected text after the [IPv6] host" }
                port = rest.dropFirst()
            }
            if host.count <= 2 || !host.dropFirst().dropLast().allSatisfy({ isHex($0) || $0 == 0x3A || $0 == 0x2E }) {
                return "invalid IPv6 host"
            }
        } else {
            if let colon = authority.lastIndex(of: 0x3A) {
                host = authority[authority.startIndex..<colon]
                port = authority[(colon + 1)...]
            }
            if host.isEmpty { return "empty host" }
            for c in host where !(c >= 0x80 || isAlpha(c) || isDigit(c) || "-._~%!$&'()*+,;=".utf8.contains(c)) {
                return "character '\(Character(Unicode.Scalar(c)))' not allowed in the host"
            }
        }
        if !port.isEmpty {
            guard port.count <= 5, port.allSatisfy(isDigit),
                  let p = Int(String(decoding: port, as: UTF8.self)), p <= 65535 else {
                return "bad port \"\(String(decoding: port, as: UTF8.self))\""
            }
        }
        return nil
    }

    /// The decoded absolute path of a `file:` URL.
    static func filePath(_ b: [UInt8], schemeEnd: Int) -> Result<String, Problem> {
        func bad(_ d: String) -> Result<String, Problem> { .failure(Problem(reason: "invalid URL", detail: d)) }
        var rest = b[(schemeEnd + 1)...]
        if rest.starts(with: [0x2F, 0x2F]) {                                  // file://host/path
            rest = rest.dropFirst(2)
            let slash = rest.firstIndex(of: 0x2F) ?? rest.endIndex
            let host = String(decoding: rest[rest.startIndex..<slash], as: UTF8.self)
            if !host.isEmpty && host.lowercased() != "localhost" { return bad("file URL names another host \"\(host)\"") }
            rest = rest[slash...]
        }
        guard rest.first == 0x2F else { return bad("a file URL needs an absolute path (file:///…)") }
        if let cut = rest.firstIndex(where: { $0 == 0x3F || $0 == 0x23 }) { rest = rest[..<cut] }   // drop ?query #fragment
        var out: [UInt8] = []
        out.reserveCapacity(rest.count)
        var k = rest.startIndex
        while k < rest.endIndex {
            let c = rest[k]
            if c == UInt8(ascii: "%") {
                guard k + 2 < rest.endIndex, let hi = hexValue(rest[k + 1]), let lo = hexValue(rest[k + 2]) else {
                    return bad("bad percent escape")
                }
                out.append(hi << 4 | lo)
                k += 3
            } else {
                if c < 0x20 || c == 0x7F { return bad("control character in file URL") }
                out.append(c)
                k += 1
            }
        }
        if out.contains(0) { return bad("file URL decodes to a NUL character") }
        guard let path = String(validating: out, as: UTF8.self) else { return bad("file URL decodes to invalid UTF-8") }
        return .success(path)
    }

    // MARK: Keys and paths

    /// The identity `split` deduplicates on: the absolute, lexically normalised path for local
    /// images (relative paths resolved against `baseDir`, which must be absolute), or the URL
    /// with its scheme and host lowercased for remote ones.
    public func canonicalKey(baseDir: String) -> String {
        switch self {
        case let .path(p): return Self.normalize(p.hasPrefix("/") ? p : baseDir + "/" + p)
        case let .file(p): return Self.normalize(p)
        case let .remote(url): return Self.lowercasingSchemeAndHost(url)
        }
    }

    static func lowercasingSchemeAndHost(_ url: String) -> String {
        let b = Array(url.utf8)
        guard let schemeEnd = schemeLength(b) else { return url }
        var end = schemeEnd + 3
        while end < b.count, b[end] != 0x2F, b[end] != 0x3F, b[end] != 0x23 { end += 1 }
        end = min(end, b.count)
        if !b[0..<end].contains(where: { $0 >= 0x41 && $0 <= 0x5A }) { return url }
        let head = String(decoding: b[0..<end], as: UTF8.self).lowercased()
        return head + String(decoding: b[end...], as: UTF8.self)
    }

    /// `path` with empty and `.` segments removed and `x/..` pairs collapsed (lexically, without
    /// touching the file system). An absolute path stays absolute; `..` never climbs above `/`.
    public static func normalize(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        var parts: [Substring] = []
        for seg in path.split(separator: "/", omittingEmptySubsequences: true) {
            if seg == "." { continue }
            if seg == ".." {
                if let last = parts.last, last != ".." { parts.removeLast(); continue }
                if absolute { continue }
            }
            parts.append(seg)
        }
        let joined = parts.joined(separator: "/")
        if absolute { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }

    /// The relative path from folder `base` to `target` (both absolute and normalised), e.g.
    /// `relative("/d/raw/img/a.png", from: "/d/out")` is `../raw/img/a.png`.
    public static func relative(_ target: String, from base: String) -> String {
        let t = target.split(separator: "/"), b = base.split(separator: "/")
        var common = 0
        while common < t.count, common < b.count, t[common] == b[common] { common += 1 }
        let parts = Array(repeating: Substring(".."), count: b.count - common) + t[common...]
        return parts.isEmpty ? "." : parts.joined(separator: "/")
    }

    // MARK: Bytes

    static func isAlpha(_ c: UInt8) -> Bool { (c | 0x20) >= 0x61 && (c | 0x20) <= 0x7A }
    static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    static func isHex(_ c: UInt8) -> Bool { hexValue(c) != nil }
    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
}
