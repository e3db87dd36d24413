import Foundation
import Support

/// Errors reading or writing classes.json.
public struct ClassListError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)" }
}

/// The class names a model predicts, in output-index order.
///
/// Built from the training labels, the names are the distinct labels sorted by Unicode code
/// points (the order of Python's `sorted()`, so `"B" < "a"`); index `i` is output unit `i`.
/// Saved next to a checkpoint as classes.json, a JSON array of the names.
public struct ClassList: Sendable, Equatable {
    public var names: [String] {
        didSet { lookup = Self.makeLookup(names) }
    }
    private var lookup: [String: Int]

    /// The sorted distinct `labels`.
    public init(labels: some Sequence<String>) {
        let distinct = Set(labels)
        self.init(names: distinct.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) })
    }

    /// The given names in the given order (e.g. read from classes.json). With duplicates,
    /// `index(of:)` returns the first.
    public init(names: [String]) {
        self.names = names
        self.lookup = Self.makeLookup(names)
    }

    public var count: Int { names.count }

    /// The output index of `label`, or nil when it is not a known class.
    public func index(of label: String) -> Int? { lookup[label] }

    public static func == (a: ClassList, b: ClassList) -> Bool { a.names == b.names }

    private static func makeLookup(_ names: [String]) -> [String: Int] {
        var d = [String: Int](minimumCapacity: names.count)
        for (i, n) in names.enumerated() where d[n] == nil { d[n] = i }
        return d
    }

    /// Writes classes.json atomically: a JSON array with one name per line.
    public func save(to path: String) throws {
        var out = Array("[".utf8)
        for (i, n) in names.enumerated() {
            out.append(contentsOf: Array((i == 0 ? "\n  " : ",\n  ").utf8))
            JSONWriter.appendString(n, to: &out)
        }
        out.append(contentsOf: Array((names.isEmpty ? "]\n" : "\n]\n").utf8))
        try AtomicFile.write(Data(out), to: path)
    }

    /// Reads classes.json: a JSON array of distinct, non-empty strings.
    public static func load(path: String) throws -> ClassList {
        let bytes: [UInt8]
        do {
            bytes = try ImageFile.readBytes(path: path)
        } catch let ImageError.io(_, e) {
            throw ClassListError(path: path, reason: String(cString: strerror(e)))
        }
        var body = bytes[...]
        if body.starts(with: [0xEF, 0xBB, 0xBF]) { body = body.dropFirst(3) }
        let value: JSONValue
        do {
            value = try body.withUnsafeBufferPointer { try JSONParser.parse($0) }
        } catch {
            throw ClassListError(path: path, reason: "not JSON: \(error)")
        }
        guard case let .array(items) = value else {
            throw ClassListError(path: path, reason: "expected a JSON array of class names, found \(value.typeName)")
        }
        var names: [String] = []
        var seen = Set<String>()
        for (i, item) in items.enumerated() {
            guard case let .string(name) = item else {
                throw ClassListError(path: path, reason: "entry \(i) is \(item.typeName), not a string")
            }
            if name.isEmpty { throw ClassListError(path: path, reason: "entry \(i) is an empty name") }
            if !seen.insert(name).inserted {
                throw ClassListError(path: path, reason: "duplicate class name \(JSONWriter.string(name))")
            }
            names.append(name)
        }
        return ClassList(names: names)
    }
}
