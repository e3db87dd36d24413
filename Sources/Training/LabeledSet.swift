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
    /// Lines the manifest reader rejected (only with --skip-bad-records), with reasons.
    public var rejected: [String]
    /// SHA-256 of the manifest's normalised records (stored with checkpoints).
    public var fingerprint: String?

    public var count: Int { labels.count }

    /// Reads `path` and maps labels through `classes`; a label outside the class list is an
    /// error naming the line.
    public static func load(path: String, classes: ClassList?, skipBad: Bool) throws -> (LabeledSet, ClassList) {
        let manifest = try Manifest.load(path: path, skipBad: skipBad)
        let classList = classes ?? ClassList(labels: manifest.records.map(\.label))
        var set = LabeledSet(manifest: path, images: [], paths: [], labels: [], lines: [],
                             rejected: manifest.rejected.map { "\(path):\($0.line): \($0.reason)" })
        for r in manifest.records {
            guard let k = classList.index(of: r.label) else {
                let reason = "label \"\(r.label)\" is not one of the \(classList.names.count) training classes"
                if skipBad { set.rejected.append("\(path):\(r.line): \(reason)"); continue }
                throw ManifestError(file: path, line: r.line, reason: reason)
            }
            set.images.append(r.image); set.paths.append(r.path); set.labels.append(Int32(k)); set.lines.append(r.line)
        }
        return (set, classList)
    }
}

/// What the coordinator ships to every rank after reading and validating the manifests.
struct DatasetShipment: Codable {
    var train: LabeledSet?
    var val: LabeledSet?
    var classes: [String]?
    var error: String?
}

/// Rank 0 reads and validates the manifests once; every other rank receives the result by
/// broadcast (so ranks need no shared view of the manifest files, only of the images).
enum DatasetExchange {
    static func share(_ comm: Communicator, load: () throws -> DatasetShipment) throws -> DatasetShipment {
        var bytes: [UInt8] = []
        var localError: Error?
        if comm.rank == 0 {
            var shipment: DatasetShipment
            do { shipment = try load() } catch {
                localError = error
                shipment = DatasetShipment(error: "\(error)")
            }
            bytes = Array(try JSONEncoder().encode(shipment))
        }
        let received = try comm.broadcast(bytes: bytes, root: 0)
        if let localError { throw localError }
        let shipment = try JSONDecoder().decode(DatasetShipment.self, from: Data(received))
        if let e = shipment.error { throw TrainingError.coordinatorFailed("rank 0 could not prepare the data: \(e)") }
        return shipment
    }
}
