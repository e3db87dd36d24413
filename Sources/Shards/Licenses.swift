import Foundation

/// Licence names as `split --license-allow` / `--production-only` compare them.
///
/// `normalize` lowercases, turns spaces and underscores into `-`, drops a trailing version
/// (`cc-by-4.0` → `cc-by`, `cc0-1.0` → `cc0`, `apache-2.0` → `apache`), reads Creative Commons
/// URLs (`https://creativecommons.org/licenses/by-sa/4.0/` → `cc-by-sa`,
/// `…/publicdomain/zero/1.0/` → `cc0`, `…/publicdomain/mark/1.0/` → `public-domain`) and maps
/// the aliases `pd`, `pdm`, `publicdomain` to `public-domain` and `cc-zero` to `cc0`.
public enum Licenses {
    /// What `--production-only` keeps: licences that allow commercial use and modification.
    /// Non-commercial (`-nc`) and no-derivatives (`-nd`) variants, "all rights reserved" and
    /// records without a licence are excluded. `cc-by-sa` requires derived works to be shared
    /// alike and `cc-by` attribution: keep the records' attribution fields.
    public static let permissive: [String] = [
        "cc0", "public-domain", "cc-by", "cc-by-sa", "mit", "apache", "bsd-2-clause", "bsd-3-clause",
        "isc", "unlicense",
    ]

    public static func normalize(_ text: String) -> String {
        var s = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        if let r = s.range(of: "creativecommons.org/") {
            let parts = s[r.upperBound...].split(separator: "/").map(String.init)
            if parts.count >= 2, parts[0] == "licenses" { return "cc-" + parts[1] }
            if parts.count >= 2, parts[0] == "publicdomain" {
                if parts[1] == "zero" { return "cc0" }
                if parts[1] == "mark" { return "public-domain" }
            }
        }
        s = String(s.map { $0 == " " || $0 == "_" ? "-" : $0 })
        var parts = s.split(separator: "-", omittingEmptySubsequences: true)
        while parts.count > 1, let last = parts.last, last.allSatisfy({ $0.isNumber || $0 == "." }) { parts.removeLast() }
        s = parts.joined(separator: "-")
        switch s {
        case "pd", "pdm", "publicdomain", "public-domain-mark": return "public-domain"
        case "cc-zero", "cc-0": return "cc0"
        default: return s
        }
    }
}
