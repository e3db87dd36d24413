import Foundation

/// One usable line of a manifest.
public struct ManifestRecord: Sendable, Equatable {
    /// The image reference exactly as written in the manifest.
    public var image: String
    /// `image` resolved against the manifest's folder (unchanged when absolute).
    public var path: String
    /// The label as a string (an integer label is kept as its decimal text).
    public var label: String
    /// 1-based line number in the manifest.
    public var line: Int

    public init(image: String, path: String, label: String, line: Int) {
        self.image = image
        self.path = path
        self.label = label
        self.line = line
    }
}

/// A bad manifest line (or an unreadable manifest, with `line` 0), e.g.
/// `train.jsonl:17: missing field "label"`.
public struct ManifestError: Error, CustomStringConvertible, Equatable {
    /// The manifest path as given to `Manifest.load`.
    public var file: String
    /// 1-based line number; 0 when the whole file is at fault.
    public var line: Int
    /// A short, stable category such as `not JSON` or `missing field "label"` (used as the key
    /// of `Manifest.rejectedCounts`).
    public var reason: String
    /// Specifics, e.g. the parser's message with its column.
    public var detail: String?

    public init(file: String, line: Int, reason: String, detail: String? = nil) {
        self.file = file
        self.line = line
        self.reason = reason
        self.detail = detail
    }

    /// `reason` with its detail, without the location.
    public var message: String { detail.map { "\(reason): \($0)" } ?? reason }

    public var description: String {
        line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)"
    }
}

/// A JSONL manifest: one JSON object per line naming an image and its label, e.g.
///
///     {"id": "train-00000", "image": "train/0/00000.png", "label": "Ankle boot", "label_id": 9}
///
/// Relative image paths are resolved against the manifest's own folder, so a dataset folder can
/// be moved as a whole. Other fields are ignored for now.
public struct Manifest: Sendable {
    /// The manifest path as given.
    public var path: String
    /// Good records in file order.
    public var records: [ManifestRecord]
    /// With `skipBad`, every skipped line and why (`reason` plus detail); empty otherwise.
    public var rejected: [(line: Int, reason: String)]
    /// With `skipBad`, the number of skipped lines per reason category.
    public var rejectedCounts: [String: Int]

    public init(path: String, records: [ManifestRecord], rejected: [(line: Int, reason: String)] = [],
                rejectedCounts: [String: Int] = [:]) {
        self.path = path
        self.records = records
        self.rejected = rejected
        self.rejectedCounts = rejectedCounts
    }

    /// Reads a JSONL manifest, streaming it in chunks.
    ///
    /// Each non-blank line must be a JSON object with a non-empty string `imageField` and a
    /// `labelField` that is a non-empty string or an integer (kept as its decimal text). Blank
    /// lines (only whitespace) are skipped; a UTF-8 byte-order mark at the start is ignored.
    /// A bad line throws `ManifestError` naming `file:line`, unless `skipBad` is true: then it
    /// is skipped and recorded in `rejected` / `rejectedCounts` (nothing is dropped silently).
    /// An unreadable file always throws (with line 0).
    ///
    /// Reason categories: `not JSON`, `not a JSON object`, `missing field "image"`,
    /// `empty "image"`, `"image" is not a string`, `missing field "label"`,
    /// `"label" is not a string or integer`, `empty "label"` (with the actual field names).
    public static func load(path: String, imageField: String = "image", labelField: String = "label",
                            skipBad: Bool = false) throws -> Manifest {
        let reader: LineReader
        do {
            reader = try LineReader(path: path)
        } catch let LineReader.Failure.open(e) {
            throw ManifestError(file: path, line: 0, reason: "cannot open", detail: String(cString: strerror(e)))
        }
        let dir = (path as NSString).deletingLastPathComponent
        var manifest = Manifest(path: path, records: [])
        var first = true
        while true {
            let outcome: LineOutcome?
            do {
                outcome = try reader.next { rawLine -> LineOutcome in
                    var line = rawLine
                    if first {
                        first = false
                        if line.count >= 3 && line[0] == 0xEF && line[1] == 0xBB && line[2] == 0xBF {
                            line = UnsafeBufferPointer(rebasing: line[3...])
                        }
                    }
                    if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return .blank }
                    return .parsed(parseRecord(line, lineNumber: reader.lineNumber, file: path, dir: dir,
                                       imageField: imageField, labelField: labelField))
                }
            } catch let LineReader.Failure.read(e) {
                throw ManifestError(file: path, line: reader.lineNumber + 1, reason: "read error",
                                    detail: String(cString: strerror(e)))
            }
            guard let outcome else { break }          // end of file
            switch outcome {
            case .blank: continue
            case let .parsed(.success(record)): manifest.records.append(record)
            case let .parsed(.failure(error)):
                if !skipBad { throw error }
                manifest.rejected.append((line: error.line, reason: error.message))
                manifest.rejectedCounts[error.reason, default: 0] += 1
            }
        }
        return manifest
    }

    enum LineOutcome { case blank, parsed(Result<ManifestRecord, ManifestError>) }

    /// Parses one non-blank line into a record or the reason it is bad.
    static func parseRecord(_ line: UnsafeBufferPointer<UInt8>, lineNumber: Int, file: String, dir: String,
                            imageField: String, labelField: String) -> Result<ManifestRecord, ManifestError> {
        func bad(_ reason: String, _ detail: String? = nil) -> Result<ManifestRecord, ManifestError> {
            .failure(ManifestError(file: file, line: lineNumber, reason: reason, detail: detail))
        }
        let value: JSONValue
        do {
            value = try JSONParser.parse(line)
        } catch let e as JSONParseError {
            return bad("not JSON", e.description)
        } catch {
            return bad("not JSON", "\(error)")
        }
        guard case .object = value else { return bad("not a JSON object", "found \(value.typeName)") }

        let imageKey = JSONWriter.string(imageField), labelKey = JSONWriter.string(labelField)
        guard let imageValue = value[imageField] else { return bad("missing field \(imageKey)") }
        guard case let .string(image) = imageValue else {
            return bad("\(imageKey) is not a string", "found \(imageValue.typeName)")
        }
        if image.isEmpty { return bad("empty \(imageKey)") }

        guard let labelValue = value[labelField] else { return bad("missing field \(labelKey)") }
        let label: String
        switch labelValue {
        case let .string(s):
            if s.isEmpty { return bad("empty \(labelKey)") }
            label = s
        case let .number(text) where labelValue.isIntegerLiteral:
            label = normalizedInteger(text)
        default:
            return bad("\(labelKey) is not a string or integer", "found \(labelValue.typeName)")
        }
        return .success(ManifestRecord(image: image, path: resolve(image, against: dir), label: label, line: lineNumber))
    }

    /// "-0" → "0"; other integer literals are already canonical in JSON (no leading zeros / "+").
    static func normalizedInteger(_ text: String) -> String { text == "-0" ? "0" : text }

    /// `image` joined to `dir` unless it is absolute (or `dir` is empty).
    static func resolve(_ image: String, against dir: String) -> String {
        if image.hasPrefix("/") || dir.isEmpty { return image }
        return dir.hasSuffix("/") ? dir + image : dir + "/" + image
    }
}
