import Foundation
import Shards
import Dist

/// The records of one manifest as the trainer needs them, in manifest order: what the image
/// reference said, where it resolved, the class index and the line (for messages).
public struct LabeledSet: Codable, Sendable {
    public var manifest: String
    public var images: [String]
    public var paths: [String]
    public var labels: [Int32]
    public var lines: [Int]
    /// Group key per record ("" when the manifest has none): records sharing one stay together.
    public var groups: [String]
    /// Optional `lat`, `lon` and `source` of each record (the fusion model's metadata).
    public var latitudes: [Double?] = []
    public var longitudes: [Double?] = []
    public var sources: [String?] = []
    /// Lines the manifest reader rejected (only with --skip-bad-records), with reasons.
    public var rejected: [String]
    /// SHA-256 of the manifest's normalised records (stored with checkpoints).
    public var fingerprint: String?

    public var count: Int { labels.count }

    /// Reads `path` (fields and bad-record policy from `options`) and maps labels through
    /// `classes`; a label outside the class list is an error naming the line.
    public static func load(path: String, classes: ClassList?, options: ManifestOptions) throws -> (LabeledSet, ClassList) {
        let manifest = try Manifest.load(path: path, options: options)
        let skipBad = options.onBadRecord == .skip
        let classList = classes ?? ClassList(labels: manifest.records.map(\.label))
        var set = LabeledSet(manifest: path, images: [], paths: [], labels: [], lines: [], groups: [],
                             rejected: manifest.rejected.map { "\(path):\($0.line): \($0.reason)" },
                             fingerprint: manifest.fingerprint)
        for r in manifest.records {
            guard let k = classList.index(of: r.label) else {
                let reason = "label \"\(r.label)\" is not one of the \(classList.names.count) training classes"
                if skipBad { set.rejected.append("\(path):\(r.line): \(reason)"); continue }
                throw ManifestError(file: path, line: r.line, reason: reason)
            }
            set.images.append(r.image); set.paths.append(absolute(r)); set.labels.append(Int32(k)); set.lines.append(r.line)
            set.groups.append(r.group ?? "")
            set.latitudes.append(r.metadata.lat); set.longitudes.append(r.metadata.lon); set.sources.append(r.metadata.source)
        }
        return (set, classList)
    }

    /// A record's path made absolute against the working directory of the process that reads
    /// the manifest (the coordinator), so every rank — on any host, whatever its own working
    /// directory — opens the same path; URLs and absolute paths are kept as they are.
    static func absolute(_ r: ManifestRecord) -> String {
        guard !r.path.hasPrefix("/"), case .success(.path) = ImageReference.parse(r.image) else { return r.path }
        return (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(r.path)
    }
}

/// The data of one training run: training and validation records and the class list.
public struct TrainingData: Codable, Sendable {
    public var train: LabeledSet
    public var val: LabeledSet?
    public var classes: [String]
    public init(train: LabeledSet, val: LabeledSet?, classes: [String]) {
        self.train = train; self.val = val; self.classes = classes
    }
}

/// Rank 0 reads and validates the data once; every other rank receives the result by broadcast
/// (so ranks need no shared view of the manifest files, only of the images: relative image
/// paths are resolved against the manifest's folder and made absolute on rank 0, so every host
/// needs the images at those same absolute paths — or the manifest names URLs). A failure on
/// rank 0 stops every rank: rank 0 with the cause, the others with a short note.
enum DatasetExchange {
    private struct Shipment<T: Codable>: Codable {
        var value: T?
        var error: String?
    }

    static func share<T: Codable>(_ comm: Communicator, load: () throws -> T) throws -> T {
        var bytes: [UInt8] = []
        var localError: Error?
        if comm.rank == 0 {
            var shipment: Shipment<T>
            do { shipment = Shipment(value: try load()) } catch {
                localError = error
                shipment = Shipment(error: "\(error)")
            }
            bytes = Array(try JSONEncoder().encode(shipment))
        }
        let received = try comm.broadcast(bytes: bytes, root: 0)
        if let localError { throw localError }
        let shipment = try JSONDecoder().decode(Shipment<T>.self, from: Data(received))
        guard let value = shipment.value else {
            throw TrainingError.coordinatorFailed("rank 0 could not prepare the data: \(shipment.error ?? "unknown error")")
        }
        return value
    }
}

extension LabeledSet {
    /// The records at `indices`, in that order (manifest name kept for messages).
    public func subset(_ indices: [Int]) -> LabeledSet {
        LabeledSet(manifest: manifest, images: indices.map { images[$0] }, paths: indices.map { paths[$0] },
                   labels: indices.map { labels[$0] }, lines: indices.map { lines[$0] }, groups: indices.map { groups[$0] },
                   latitudes: indices.map { latitudes[$0] }, longitudes: indices.map { longitudes[$0] },
                   sources: indices.map { sources[$0] }, rejected: [], fingerprint: nil)
    }

    /// JSONL lines naming each record's resolved path and label (a manifest that loads anywhere
    /// the images are at the same absolute paths).
    public func manifestLines(classes: [String]) -> [String] {
        indices.map {
            var o: [String: Any] = ["image": paths[$0], "label": classes[Int(labels[$0])], "source_image": images[$0]]
            if !groups[$0].isEmpty { o["group"] = groups[$0] }
            return jsonLine(o)
        }
    }

    var indices: Range<Int> { 0..<count }

    /// At most `limit` records, spread evenly over the manifest (every ⌈count/limit⌉-th, so all
    /// parts of it are represented); all of them when `limit` is nil or not smaller.
    public func limited(to limit: Int?) -> LabeledSet {
        guard let limit, limit < count else { return self }
        var s = subset((0..<limit).map { $0 * count / limit })
        s.rejected = rejected
        s.fingerprint = fingerprint
        return s
    }
}
