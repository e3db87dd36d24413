import Testing
import Foundation
import Dist
import TestSupport
@testable import Training

/// Fold files moved to the coordinator in chunks (here over a one-process communicator: rank 0
/// sends to itself through the same gather the MPI ranks use).
@Suite struct FoldTransferTests {
    @Test func filesArriveWholeAndAtomicallyInChunks() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let from = dir.appendingPathComponent("staging").path, to = dir.appendingPathComponent("run").path
        try FileManager.default.createDirectory(atPath: from + "/fold-1", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: from + "/fold-3", withIntermediateDirectories: true)
        var big = [UInt8](repeating: 0, count: 100_003)
        for i in big.indices { big[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 8) }
        try Data(big).write(to: URL(fileURLWithPath: from + "/fold-1/last.ckpt"))
        try Data("{\"epoch\":1}\n".utf8).write(to: URL(fileURLWithPath: from + "/fold-1/history.jsonl"))
        try Data().write(to: URL(fileURLWithPath: from + "/fold-3/failed_samples.jsonl"))
        try Data("torn".utf8).write(to: URL(fileURLWithPath: from + "/fold-1/.last.ckpt.tmp.123"))   // never completed
        try Data("other".utf8).write(to: URL(fileURLWithPath: from + "/fold-2.txt"))

        let files = FoldTransfer.files(in: from, folds: [1, 2, 3])
        #expect(files == ["fold-1/history.jsonl", "fold-1/last.ckpt", "fold-3/failed_samples.jsonl"])
        try FoldTransfer.ship(files, from: from, to: to, world: LocalCommunicator(), chunkBytes: 4096)
        #expect(FileManager.default.contents(atPath: to + "/fold-1/last.ckpt") == Data(big))
        #expect(FileManager.default.contents(atPath: to + "/fold-1/history.jsonl") == Data("{\"epoch\":1}\n".utf8))
        #expect(FileManager.default.contents(atPath: to + "/fold-3/failed_samples.jsonl") == Data())
        let written = try FileManager.default.contentsOfDirectory(atPath: to + "/fold-1").sorted()
        #expect(written == ["history.jsonl", "last.ckpt"])   // no temporary files left
    }

    @Test func refusesFilesOutsideTheFoldFolders() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let from = dir.appendingPathComponent("staging/inner").path, to = dir.appendingPathComponent("run").path
        try FileManager.default.createDirectory(atPath: from + "/fold-0", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: dir.appendingPathComponent("staging/secret").path))
        #expect(throws: TrainingError.self) {
            try FoldTransfer.ship(["fold-0/../../secret"], from: from, to: to, world: LocalCommunicator())
        }
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("secret").path))
        #expect(!FileManager.default.fileExists(atPath: to))
    }

    @Test func stagingFolderIsPerRunDirectoryAndStable() {
        let a = FoldTransfer.stagingDirectory(for: "/runs/a"), b = FoldTransfer.stagingDirectory(for: "/runs/b")
        #expect(a != b)
        #expect(a == FoldTransfer.stagingDirectory(for: "/runs/a"))
        #expect(a.hasPrefix(NSTemporaryDirectory().hasSuffix("/") ? String(NSTemporaryDirectory().dropLast()) : NSTemporaryDirectory()))
    }
}
