import Foundation

/// What to do with a manifest line that fails validation.
public enum BadRecordPolicy: String, Sendable, CaseIterable {
    /// Stop at the first bad line with `file:line: reason`.
    case error
    /// Skip the line, count it per reason and list it (nothing is dropped silently).
    case skip
}

/// Which fields of a manifest line hold the image reference, the label and the group key, and
/// what happens to bad lines.
///
///     var o = ManifestOptions(imageField: "image_url", labelField: "latin_name")
///     o.onBadRecord = .skip
///     let m = try Manifest.load(path: "raw.jsonl", options: o)
public struct ManifestOptions: Sendable, Equatable {
    /// The field holding the image reference (a path, `file://` URL or `http(s)://` URL).
    public var imageField: String
    /// The field holding the label (a non-empty string, or an integer kept as its decimal text).
    public var labelField: String
    /// The field holding the group key (records sharing one always land in the same split), or
    /// nil for none. A record without the field (or with null) is a group of its own.
    public var groupField: String?
    public var onBadRecord: BadRecordPolicy
    /// When false, a line without the label field (or with null) is read with an empty label
    /// (manifests of images to predict); a label that is present is still validated.
    public var labelRequired = true
    /// Map tiles: when set, each record's image is the tile URL built from its `lat`/`lon`
    /// (both required; the image field is then not read). Only for training, not `split`.
    public var tiles: MapTiles? = nil

    public init(imageField: String = "image", labelField: String = "label", groupField: String? = nil,
                onBadRecord: BadRecordPolicy = .error, tiles: MapTiles? = nil) {
        self.tiles = tiles
        self.imageField = imageField
        self.labelField = labelField
        self.groupField = groupField
        self.onBadRecord = onBadRecord
    }
}

/// Optional fields of a manifest line that distrainer understands, carried through unchanged
/// (the full line is kept in `ManifestRecord.raw`). A field that is absent or null is nil; an
/// empty string is nil too.
///
/// Validated when present: `lat` and `lon` must be finite numbers within [-90, 90] and
/// [-180, 180]; `id` a string or integer, unique within the manifest; `source`, `region` and
/// `license` strings.
public struct RecordMetadata: Sendable, Equatable {
    public var id: String?
    public var lat: Double?
    public var lon: Double?
    public var source: String?
    public var region: String?
    public var license: String?

    public init(id: String? = nil, lat: Double? = nil, lon: Double? = nil, source: String? = nil,
                region: String? = nil, license: String? = nil) {
        self.id = id; self.lat = lat; self.lon = lon
        self.source = source; self.region = region; self.license = license
    }
}

/// One usable line of a manifest.
public struct ManifestRecord: Sendable, Equatable {
    /// The image reference exactly as written in the manifest.
    public var image: String
    /// Where the image is: `image` resolved against the manifest's folder (unchanged when
    /// absolute), the decoded path of a `file://` URL, or the URL itself for http(s).
    public var path: String
    /// The label as a string (an integer label is kept as its decimal text).
    public var label: String
    /// 1-based line number in the manifest.
    public var line: Int
    /// The group key (an integer is kept as its decimal text), nil without a group field.
    public var group: String?
    /// The optional fields distrainer understands (lat, lon, id, source, region, license).
    public var metadata: RecordMetadata
    /// The line's original text (without a trailing CR or a leading byte-order mark).
    public var raw: String

    public init(image: String, path: String, label: String, line: Int, group: String? = nil,
                metadata: RecordMetadata = RecordMetadata(), raw: String = "") {
        self.image = image
        self.path = path
        self.label = label
        self.line = line
        self.group = group
        self.metadata = metadata
        self.raw = raw
    }

    /// True when the image is an http(s) URL (it cannot be opened as a local file).
    public var isRemote: Bool { if case .success(.remote) = ImageReference.parse(image) { return true } else { return false } }
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
/// Which fields hold the image, label and group is set by `ManifestOptions`. Relative image
/// paths are resolved against the manifest's own folder, so a dataset folder can be moved as a
/// whole. Other fields are carried along in `ManifestRecord.raw`.
public struct Manifest: Sendable {
    /// The manifest path as given.
    public var path: String
    /// The field mapping and bad-record policy it was read with.
    public var options: ManifestOptions
    /// Good records in file order.
    public var records: [ManifestRecord]
    /// With `.skip`, every skipped line and why (`reason` plus detail); empty otherwise.
    public var rejected: [(line: Int, reason: String)]
    /// With `.skip`, the number of skipped lines per reason category.
    public var rejectedCounts: [String: Int]

    public init(path: String, records: [ManifestRecord], rejected: [(line: Int, reason: String)] = [],
                rejectedCounts: [String: Int] = [:], options: ManifestOptions = ManifestOptions()) {
        self.path = path
        self.options = options
        self.records = records
        self.rejected = rejected
        self.rejectedCounts = rejectedCounts
    }

    /// SHA-256 (lowercase hex) of the records' image references, labels and group keys in file
    /// order (see `ManifestFingerprint` for the exact bytes). It ignores whitespace, key order
    /// and other fields, so it identifies the dataset a model was trained on. Computed on access.
    public var fingerprint: String {
        var f = ManifestFingerprint()
        for r in records { f.add(image: r.image, label: r.label, group: r.group) }
        return f.hex
    }

    /// Reads a JSONL manifest with the default field names (`image`, `label`, no group).
    /// `skipBad` is `onBadRecord: .skip`.
    public static func load(path: String, imageField: String = "image", labelField: String = "label",
                            skipBad: Bool = false) throws -> Manifest {
        try load(path: path, options: ManifestOptions(imageField: imageField, labelField: labelField,
                                                      onBadRecord: skipBad ? .skip : .error))
    }

    /// Reads a JSONL manifest, streaming it in chunks, and validates every line.
    ///
    /// Each non-blank line must be a JSON object with a non-empty string image field (a valid
    /// path, `file://` or `http(s)://` URL) and a label that is a non-empty string or an integer;
    /// the group field, when configured and present, a non-empty string or integer; and the
    /// optional fields valid as `RecordMetadata` describes, with `id` unique. Blank lines are
    /// skipped; a UTF-8 byte-order mark at the start is ignored. A bad line throws
    /// `ManifestError` naming `file:line`, unless the policy is `.skip`: then it is recorded in
    /// `rejected` / `rejectedCounts`. An unreadable file always throws (with line 0).
    ///
    /// Reason categories (with the configured field names): `not JSON`, `not a JSON object`,
    /// `missing field "image"`, `empty "image"`, `"image" is not a string`, `invalid URL`,
    /// `unsupported URL scheme`, `invalid path`, `missing field "label"`,
    /// `"label" is not a string or integer`, `empty "label"`, `empty "group"`,
    /// `"group" is not a string or integer`, `"id" is not a string or integer`,
    /// `"lat" is not a number`, `"lat" is not finite`, `"lat" out of range` (and the same for
    /// `lon`), `"source" is not a string` (and `region`, `license`), `duplicate "id"`.
    public static func load(path: String, options: ManifestOptions) throws -> Manifest {
        var manifest = Manifest(path: path, records: [], options: options)
        try scan(path: path, options: options, keepRaw: true) { _, _, outcome in
            switch outcome {
            case let .record(parsed): manifest.records.append(parsed.record)
            case let .bad(error):
                if options.onBadRecord == .error { throw error }
                manifest.rejected.append((line: error.line, reason: error.message))
                manifest.rejectedCounts[error.reason, default: 0] += 1
            }
        }
        return manifest
    }

    // MARK: Streaming

    /// A line `scan` parsed into a record.
    struct ParsedRecord {
        var record: ManifestRecord
        var reference: ImageReference
        /// The byte range of the image field's value (a JSON string literal, quotes included)
        /// within the line, so it can be replaced without touching the rest.
        var imageSpan: Range<Int>
    }

    enum ScanOutcome {
        case record(ParsedRecord)
        case bad(ManifestError)
    }

    struct ScanTotals {
        /// Lines read, blank ones included.
        var lines = 0
        var blank = 0
    }

    /// Calls `body(lineNumber, bytes)` for every line of `path` (the buffer is valid only during
    /// the call; a trailing CR and a leading UTF-8 byte-order mark are removed). Returns the
    /// number of lines.
    @discardableResult
    static func forEachLine(path: String, _ body: (Int, UnsafeBufferPointer<UInt8>) throws -> Void) throws -> Int {
        let reader: LineReader
        do {
            reader = try LineReader(path: path)
        } catch let LineReader.Failure.open(e) {
            throw ManifestError(file: path, line: 0, reason: "cannot open", detail: String(cString: strerror(e)))
        }
        var first = true
        while true {
            let more: Bool?
            do {
                more = try reader.next { rawLine -> Bool in
                    var line = rawLine
                    if first {
                        first = false
                        if line.count >= 3 && line[0] == 0xEF && line[1] == 0xBB && line[2] == 0xBF {
                            line = UnsafeBufferPointer(rebasing: line[3...])
                        }
                    }
                    try body(reader.lineNumber, line)
                    return true
                }
            } catch let LineReader.Failure.read(e) {
                throw ManifestError(file: path, line: reader.lineNumber + 1, reason: "read error",
                                    detail: String(cString: strerror(e)))
            }
            if more == nil { return reader.lineNumber }
        }
    }

    static func isBlank(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
    }

    /// Streams `path` once, validating every non-blank line, and calls `body(lineNumber, bytes,
    /// outcome)` for each. Memory is bounded by the longest line plus the set of `id`s seen
    /// (for the duplicate check). With `keepRaw` false, records carry an empty `raw`.
    @discardableResult
    static func scan(path: String, options: ManifestOptions, keepRaw: Bool,
                     _ body: (Int, UnsafeBufferPointer<UInt8>, ScanOutcome) throws -> Void) throws -> ScanTotals {
        let dir = (path as NSString).deletingLastPathComponent
        var totals = ScanTotals()
        var firstLineOfID: [String: Int] = [:]
        totals.lines = try forEachLine(path: path) { number, line in
            if isBlank(line) { totals.blank += 1; return }
            var result = parseRecord(line, lineNumber: number, file: path, dir: dir, options: options, keepRaw: keepRaw)
            if case let .success(parsed) = result, let id = parsed.record.metadata.id {
                if let first = firstLineOfID[id] {
                    result = .failure(ManifestError(file: path, line: number, reason: "duplicate \"id\"",
                                                    detail: "\(JSONWriter.string(id)) first seen on line \(first)"))
                } else {
                    firstLineOfID[id] = number
                }
            }
            switch result {
            case let .success(parsed): try body(number, line, .record(parsed))
            case let .failure(error): try body(number, line, .bad(error))
            }
        }
        return totals
    }

    /// Parses one non-blank line into a record or the reason it is bad (all checks except the
    /// duplicate `id`, which needs the lines before).
    static func parseRecord(_ line: UnsafeBufferPointer<UInt8>, lineNumber: Int, file: String, dir: String,
                            options: ManifestOptions, keepRaw: Bool) -> Result<ParsedRecord, ManifestError> {
        func bad(_ reason: String, _ detail: String? = nil) -> Result<ParsedRecord, ManifestError> {
            .failure(ManifestError(file: file, line: lineNumber, reason: reason, detail: detail))
        }
        let value: JSONValue, spans: [Range<Int>]
        do {
            (value, spans) = try JSONParser.parseWithMemberSpans(line)
        } catch let e as JSONParseError {
            return bad("not JSON", e.description)
        } catch {
            return bad("not JSON", "\(error)")
        }
        guard case let .object(members) = value else { return bad("not a JSON object", "found \(value.typeName)") }

        // The image reference (the last member of that name, as lookups take the last), unless
        // map tiles name the image (below, from lat/lon).
        var image = "", reference = ImageReference.path(""), imageSpan = 0..<0
        if options.tiles == nil {
            let imageKey = JSONWriter.string(options.imageField)
            guard let imageIndex = members.lastIndex(where: { $0.key == options.imageField }) else {
                return bad("missing field \(imageKey)")
            }
            let imageValue = members[imageIndex].value
            guard case let .string(text) = imageValue else {
                return bad("\(imageKey) is not a string", "found \(imageValue.typeName)")
            }
            if text.isEmpty { return bad("empty \(imageKey)") }
            switch ImageReference.parse(text) {
            case let .success(r): reference = r
            case let .failure(p): return bad(p.reason, "\(imageKey): \(p.detail)")
            }
            image = text
            imageSpan = spans[imageIndex]
        }

        // The label.
        let labelKey = JSONWriter.string(options.labelField)
        let label: String
        let given = value[options.labelField]
        if !options.labelRequired && (given == nil || given == .null) {
            label = ""
        } else {
            guard let labelValue = given else { return bad("missing field \(labelKey)") }
            guard let labelText = stringOrInteger(labelValue) else {
                return bad("\(labelKey) is not a string or integer", "found \(labelValue.typeName)")
            }
            if labelText.isEmpty { return bad("empty \(labelKey)") }
            label = labelText
        }

        // The group key: absent or null means none.
        var group: String?
        if let groupField = options.groupField, let groupValue = value[groupField], groupValue != .null {
            let groupKey = JSONWriter.string(groupField)
            guard let g = stringOrInteger(groupValue) else {
                return bad("\(groupKey) is not a string or integer", "found \(groupValue.typeName)")
            }
            if g.isEmpty { return bad("empty \(groupKey)") }
            group = g
        }

        // Optional metadata.
        var meta = RecordMetadata()
        if let v = value["id"], v != .null {
            guard let id = stringOrInteger(v) else {
                return bad("\"id\" is not a string or integer", "found \(v.typeName)")
            }
            meta.id = id.isEmpty ? nil : id
        }
        for (name, limit) in [("lat", 90.0), ("lon", 180.0)] {
            guard let v = value[name], v != .null else { continue }
            guard case let .number(text) = v else { return bad("\"\(name)\" is not a number", "found \(v.typeName)") }
            guard let x = Double(text), x.isFinite else { return bad("\"\(name)\" is not finite", text) }
            guard abs(x) <= limit else { return bad("\"\(name)\" out of range", "\(text) is outside [-\(Int(limit)), \(Int(limit))]") }
            if name == "lat" { meta.lat = x } else { meta.lon = x }
        }
        for name in ["source", "region", "license"] {
            guard let v = value[name], v != .null else { continue }
            guard case let .string(s) = v else { return bad("\"\(name)\" is not a string", "found \(v.typeName)") }
            let kept = s.isEmpty ? nil : s
            switch name {
            case "source": meta.source = kept
            case "region": meta.region = kept
            default: meta.license = kept
            }
        }

        if let tiles = options.tiles {
            guard let lat = meta.lat, let lon = meta.lon else {
                let missing = [meta.lat == nil ? "\"lat\"" : nil, meta.lon == nil ? "\"lon\"" : nil].compactMap { $0 }
                return bad("missing \(missing.joined(separator: " and ")) for the map tile", "--tile-url builds the image from lat/lon")
            }
            image = tiles.url(lat: lat, lon: lon)
            reference = .remote(url: image)
        }
        let path: String
        switch reference {
        case let .path(p): path = resolve(p, against: dir)
        case let .file(p): path = p
        case let .remote(url): path = url
        }
        let raw = keepRaw ? String(decoding: line, as: UTF8.self) : ""
        let record = ManifestRecord(image: image, path: path, label: label, line: lineNumber, group: group,
                                    metadata: meta, raw: raw)
        return .success(ParsedRecord(record: record, reference: reference, imageSpan: imageSpan))
    }

    /// The text of a string, or of an integer literal (canonical decimal); nil for other types.
    static func stringOrInteger(_ v: JSONValue) -> String? {
        switch v {
        case let .string(s): return s
        case let .number(text) where v.isIntegerLiteral: return normalizedInteger(text)
        default: return nil
        }
    }

    /// "-0" → "0"; other integer literals are already canonical in JSON (no leading zeros / "+").
    static func normalizedInteger(_ text: String) -> String { text == "-0" ? "0" : text }

    /// `image` joined to `dir` unless it is absolute (or `dir` is empty).
    static func resolve(_ image: String, against dir: String) -> String {
        if image.hasPrefix("/") || dir.isEmpty { return image }
        return dir.hasSuffix("/") ? dir + image : dir + "/" + image
    }
}
