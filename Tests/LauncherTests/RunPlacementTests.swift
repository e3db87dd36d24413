import Testing
import Foundation
import TestSupport

/// What lets ranks on different hosts agree without a shared file system, seen from the CLI.
@Suite(.serialized) struct RunPlacementTests {
    let common = ["--model", "refcnn", "--image-size", "28", "--channels", "1", "--epochs", "1", "--batch-size", "16", "--quiet"]

    /// Caches live on each host's local disk, never inside RUN_DIR (which only rank 0 writes).
    @Test func cacheDirInsideTheRunDirectoryIsRefused() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 40, test: 8)
        let run = dir.appendingPathComponent("run")
        for cache in [run.appendingPathComponent("cache").path, run.path + "/./sub/../cache", run.path] {
            let r = try TestSupport.distrainer(["train", "--train", data.train, "--out", run.path, "--cache-dir", cache] + common)
            #expect(r.status != 0)
            #expect(r.stderr.contains("--cache-dir") && r.stderr.contains("inside the run directory"), "\(r.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: run.path))
        // A sibling folder whose name merely starts like the run's is fine.
        let ok = try TestSupport.distrainer(["train", "--train", data.train, "--out", run.path, "--cache-dir", run.path + "-cache"] + common)
        #expect(ok.status == 0, "\(ok.stderr)")
    }

    /// A manifest named by a relative path, with relative image paths: rank 0 resolves them
    /// against the manifest's folder and makes them absolute, so ranks whose working directory
    /// differs (other hosts) open the same files; the fold manifests record those paths.
    @Test func relativeImagePathsBecomeAbsoluteOnTheCoordinator() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        _ = try Fixtures.dataset(in: dir, train: 60, test: 8)
        let r = try TestSupport.run(TestSupport.distrainerPath, ["cv", "--train", "train.jsonl", "--folds", "2", "--out", "cv"] + common,
                                    cwd: dir)
        #expect(r.status == 0, "\(r.stderr)")
        for fold in 0..<2 {
            let text = try String(contentsOf: dir.appendingPathComponent("cv/fold-\(fold)/train.jsonl"), encoding: .utf8)
            let images = try text.split(separator: "\n").map { try #require((try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["image"] as? String) }
            #expect(!images.isEmpty)
            for image in images {
                #expect(image.hasPrefix(dir.path + "/"), "\(image)")
                #expect(FileManager.default.fileExists(atPath: image))
            }
        }
    }
}
