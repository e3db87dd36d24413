import Crypto

/// An incremental SHA-256 over manifest records, independent of JSON whitespace, key order and
/// fields other than the image reference, label and group key.
///
/// Each record contributes the UTF-8 bytes of the compact JSON array
/// `[image,label,group]` followed by a newline, where `group` is `null` when absent and strings
/// escape only `"`, `\` and control characters (exactly Python's
/// `json.dumps([image, label, group], ensure_ascii=False, separators=(",", ":")) + "\n"`).
/// The empty manifest's fingerprint is SHA-256 of no bytes.
///
///     var f = ManifestFingerprint()
///     f.add(image: "a.png", label: "cat", group: nil)    // hashes ["a.png","cat",null]\n
///     let hex = f.hex
public struct ManifestFingerprint {
    private var hasher = SHA256()
    private var scratch: [UInt8] = []
    /// Records added so far.
    public private(set) var count = 0

    public init() {}

    public mutating func add(image: String, label: String, group: String?) {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(UInt8(ascii: "["))
        JSONWriter.appendString(image, to: &scratch)
        scratch.append(UInt8(ascii: ","))
        JSONWriter.appendString(label, to: &scratch)
        scratch.append(UInt8(ascii: ","))
        if let group { JSONWriter.appendString(group, to: &scratch) } else { scratch.append(contentsOf: Array("null".utf8)) }
        scratch.append(contentsOf: [UInt8(ascii: "]"), 0x0A])
        hasher.update(data: scratch)
        count += 1
    }

    /// The lowercase hex digest of the records added so far.
    public var hex: String {
        Self.hex(hasher.finalize())
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }
}
