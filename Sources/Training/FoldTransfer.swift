import Foundation
import Dist
import Support

/// How the folds of a cross-validation reach RUN_DIR when the ranks share no file system.
///
/// Only the world's rank 0 writes RUN_DIR. A fold group whose root is another rank (possibly on
/// another host) writes its `fold-K/` files on its own host, in a staging folder under the
/// system temp dir (`stagingDirectory(for:)`), and at the end of the run `ship` moves them, file
/// by file in chunks, through MPI to rank 0, which writes each one atomically into RUN_DIR/fold-K.
/// A fold that such a group had finished before a crash is found in the staging folder on
/// resume (same host placement) and shipped then.
enum FoldTransfer {
    /// Bytes per message (well under MPI_Gatherv's 2 GiB limit, and memory-friendly).
    static let chunkBytes = 32 << 20

    /// The staging folder on this host for run directory `outDir` (the same path on every host
    /// for the same RUN_DIR, so a resumed run finds it).
    static func stagingDirectory(for outDir: String) -> String {
        let absolute = outDir.hasPrefix("/") ? outDir : FileManager.default.currentDirectoryPath + "/" + outDir
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325                  // FNV-1a, 64-bit
        for b in absolute.utf8 { hash = (hash ^ UInt64(b)) &* 0x100_0000_01b3 }
        let name = "distrainer-cv-" + String(hash, radix: 16)
        return (NSTemporaryDirectory() as NSString).appendingPathComponent(name)
    }

    /// The regular files under `root/fold-K/` for each of `folds` that has a folder there,
    /// as paths relative to `root` (finished temporary files of atomic writes excluded).
    static func files(in root: String, folds: [Int]) -> [String] {
        var out: [String] = []
        for fold in folds {
            let dir = "fold-\(fold)"
            let names = (try? FileManager.default.contentsOfDirectory(atPath: (root as NSString).appendingPathComponent(dir))) ?? []
            for name in names.sorted() where !AtomicFile.isTemporaryName(name) {
                var isDir: ObjCBool = false
                let path = (root as NSString).appendingPathComponent("\(dir)/\(name)")
                if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue { out.append("\(dir)/\(name)") }
            }
        }
        return out
    }

    /// Collective over `world`. Every rank passes the files it ships (paths relative to `from`;
    /// none on most ranks); rank 0 writes each under `to` at the same relative path, atomically.
    static func ship(_ files: [String], from: String, to: String, world: Communicator, chunkBytes: Int = chunkBytes) throws {
        // One piece per chunk of each file (an empty file is one empty piece).
        var pieces: [(file: String, offset: Int, length: Int, last: Bool)] = []
        for f in files {
            let path = (from as NSString).appendingPathComponent(f)
            let attributes = try? FileManager.default.attributesOfItem(atPath: path)
            guard let size = (attributes?[.size] as? NSNumber)?.intValue else {
                throw TrainingError.io("cannot read \(path) to send it to rank 0")
            }
            var offset = 0
            repeat {
                let length = min(chunkBytes, size - offset)
                pieces.append((f, offset, length, offset + length >= size))
                offset += length
            } while offset < size
        }
        let rounds = Int(try world.allreduce([Int64(pieces.count)], op: .max)[0])
        guard rounds > 0 else { return }
        var writers: [String: AtomicFile.Writer] = [:]   // "rank/file" → open file on rank 0
        var reader: (file: String, handle: FileHandle)?
        defer { try? reader?.handle.close() }
        for round in 0..<rounds {
            var message: [UInt8] = []
            if round < pieces.count {
                let p = pieces[round]
                if reader?.file != p.file {
                    try? reader?.handle.close()
                    let path = (from as NSString).appendingPathComponent(p.file)
                    guard let h = FileHandle(forReadingAtPath: path) else { throw TrainingError.io("cannot open \(path) to send it to rank 0") }
                    reader = (p.file, h)
                }
                let data = p.length > 0 ? try reader!.handle.read(upToCount: p.length) ?? Data() : Data()
                guard data.count == p.length else {
                    throw TrainingError.io("\((from as NSString).appendingPathComponent(p.file)) changed while being sent to rank 0")
                }
                message = Array("\(p.last ? 1 : 0) \(p.file)\n".utf8) + Array(data)
            }
            guard let received = try world.gather(bytes: message, root: 0) else { continue }
            for (rank, m) in received.enumerated() where !m.isEmpty {
                guard let nl = m.firstIndex(of: 0x0A) else { throw TrainingError.io("rank \(rank) sent a malformed fold file") }
                let header = String(decoding: m[..<nl], as: UTF8.self)
                let last = header.hasPrefix("1 ")
                let file = String(header.dropFirst(2))
                guard file.hasPrefix("fold-"), !file.split(separator: "/").contains(".."), !file.hasPrefix("/") else {
                    throw TrainingError.io("rank \(rank) sent a file outside its fold folder: \(file)")
                }
                let key = "\(rank)/\(file)"
                if writers[key] == nil {
                    let path = (to as NSString).appendingPathComponent(file)
                    try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                            withIntermediateDirectories: true)
                    writers[key] = try AtomicFile.Writer(path: path)
                }
                try m[(nl + 1)...].withUnsafeBufferPointer { try writers[key]!.append($0) }
                if last { try writers.removeValue(forKey: key)!.commit() }
            }
        }
    }
}
