import Foundation
import Support

/// The files of a run directory, written by the coordinator only (rank 0 of the job):
///
///     history.jsonl         one JSON object per epoch
///     curves.png            loss and accuracy per epoch (redrawn at each epoch end)
///     classes.json          the class list (index = model output)
///     options.json          the resolved options
///     last.ckpt, best.ckpt  checkpoints (atomic)
///     failed_samples.jsonl  samples skipped with --skip-bad-records, with reasons
struct RunDirectory {
    let path: String

    init(path: String) throws {
        self.path = path
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) }
        catch { throw TrainingError.io("cannot create run directory \(path): \(error.localizedDescription)") }
    }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    func writeJSON(_ object: Any, to name: String) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
        try AtomicFile.write(data + Data("\n".utf8), to: file(name))
    }

    /// Rewrites history.jsonl with `lines` (atomically: a crash never leaves a torn history).
    func writeHistory(_ lines: [[String: Any]]) throws {
        var data = Data()
        for l in lines {
            data += try JSONSerialization.data(withJSONObject: l, options: [.sortedKeys])
            data += Data("\n".utf8)
        }
        try AtomicFile.write(data, to: file("history.jsonl"))
    }

    /// History lines of a previous run (for resume).
    func readHistory() -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: file("history.jsonl"), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    func appendLines(_ lines: [String], to name: String) throws {
        guard !lines.isEmpty else { return }
        let p = file(name)
        if !FileManager.default.fileExists(atPath: p) { FileManager.default.createFile(atPath: p, contents: nil) }
        guard let h = FileHandle(forWritingAtPath: p) else { throw TrainingError.io("cannot open \(p)") }
        defer { try? h.close() }
        h.seekToEndOfFile()
        h.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        try h.synchronize()
    }
}
