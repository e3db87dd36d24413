import Testing
import Foundation
import Model
import TestSupport

/// Real multi-host runs on one machine: two "hosts" (network, UTS and mount namespaces made by
/// scripts/netns-cluster.sh), OpenMPI launched across them with a hostfile and a launch agent,
/// MPI over TCP on their private subnet. Each host has its own local disk: RUN_DIR is on the
/// first host's only, every rank's TMPDIR (caches, cv staging) on its own host's.
@Suite(.serialized, .enabled(if: NetnsCluster.available, "network namespaces cannot be made here (see the printed reason)"))
struct MultiHostTests {
    let common = ["--model", "refcnn", "--image-size", "28", "--channels", "1", "--epochs", "2", "--batch-size", "32",
                  "--lr", "0.05", "--seed", "5", "--quiet"]
    let hosts = ["node-a", "node-b"]

    /// Every regular file under `dir`, as relative paths.
    func files(_ dir: URL) -> Set<String> {
        guard let e = FileManager.default.enumerator(atPath: dir.path) else { return [] }
        var out = Set<String>()
        while let p = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent(p).path, isDirectory: &isDir), !isDir.boolValue { out.insert(p) }
        }
        return out
    }

    func json(_ url: URL) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    func expectClose(_ a: [Float], _ b: [Float], _ what: String) {
        #expect(a.count == b.count)
        let worst = zip(a, b).map { abs($0 - $1) / (1 + abs($1)) }.max() ?? 0
        #expect(worst <= 1e-5, "\(what): largest relative difference \(worst)")
    }

    /// (a) 2 ranks on two hosts train exactly what 2 ranks on one host do; RUN_DIR exists only
    /// on the coordinator's host and holds every file of the one-host run.
    @Test func trainAcrossHostsEqualsOneHost() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 192, test: 64)
        let cluster = try NetnsCluster(hosts: hosts); defer { cluster.stop() }
        let args = ["train", "--train", data.train, "--val", data.test] + common
        let r = try cluster.mpirun(ranks: 2, args + ["--out", cluster.local("run")])
        #expect(r.status == 0, "\(r.stderr)\n\(r.stdout)")
        #expect(r.stdout.contains("hosts: node-a (rank 0), node-b (rank 1)"), "\(r.stdout)")

        let here = dir.appendingPathComponent("one-host")
        let one = try TestSupport.mpirun(2, args + ["--out", here.path])
        #expect(one.status == 0, "\(one.stderr)")
        let run = cluster.disk("node-a").appendingPathComponent("run")
        #expect(!files(here).isEmpty)
        #expect(files(run) == files(here))
        #expect(!FileManager.default.fileExists(atPath: cluster.disk("node-b").appendingPathComponent("run").path))

        let a = try Checkpoint.load(path: run.appendingPathComponent("last.ckpt").path)
        let b = try Checkpoint.load(path: here.appendingPathComponent("last.ckpt").path)
        expectClose(a.parameters, b.parameters, "parameters")
        expectClose(a.state, b.state, "BatchNorm statistics")
        let ha = try Fixtures.history(run), hb = try Fixtures.history(here)
        #expect(ha.count == 2 && hb.count == 2)
        for (x, y) in zip(ha, hb) {
            for key in ["train_loss", "val_loss"] {
                let u = x[key] as? Double ?? .nan, v = y[key] as? Double ?? .nan
                #expect(abs(u - v) <= 1e-5 * (1 + abs(v)), "\(key): \(u) vs \(v)")
            }
            #expect(x["val_acc"] as? Double == y["val_acc"] as? Double)
        }
    }

    /// (b) `cv --folds 2 --map-by node`: each fold group on its own host; per-fold metrics equal
    /// the one-host run's, and the second host's fold reaches RUN_DIR on the first host.
    @Test func foldGroupsOnSeparateHostsEqualOneHost() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 160, test: 8)
        let cluster = try NetnsCluster(hosts: hosts); defer { cluster.stop() }
        let args = ["cv", "--train", data.train, "--folds", "2"] + common
        let r = try cluster.mpirun(ranks: 2, args + ["--out", cluster.local("cv")])
        #expect(r.status == 0, "\(r.stderr)\n\(r.stdout)")
        #expect(r.stdout.contains("fold 0: hosts: node-a (rank 0)"), "\(r.stdout)")
        #expect(r.stdout.contains("fold 1: hosts: node-b (rank 1)"), "\(r.stdout)")

        let here = dir.appendingPathComponent("cv-one-host")
        let one = try TestSupport.mpirun(2, args + ["--out", here.path])
        #expect(one.status == 0, "\(one.stderr)")
        let run = cluster.disk("node-a").appendingPathComponent("cv")
        #expect(files(here).contains("fold-1/oof.jsonl") && files(here).contains("fold-1/last.ckpt"))
        #expect(files(run) == files(here))
        // The second host wrote nothing where RUN_DIR would be, and left no staged fold behind.
        let b = cluster.disk("node-b")
        #expect(!FileManager.default.fileExists(atPath: b.appendingPathComponent("cv").path))
        let staged = (try? FileManager.default.contentsOfDirectory(atPath: b.appendingPathComponent("tmp").path)) ?? []
        #expect(!staged.contains { $0.hasPrefix("distrainer-cv-") }, "\(staged)")

        let fa = try #require(try json(run.appendingPathComponent("cv_summary.json"))["folds"] as? [[String: Any]])
        let fb = try #require(try json(here.appendingPathComponent("cv_summary.json"))["folds"] as? [[String: Any]])
        #expect(fa.count == 2 && fb.count == 2)
        for (x, y) in zip(fa, fb) {
            #expect(x["status"] as? String == "complete")
            #expect(x["confusion"] as? [[Int]] == y["confusion"] as? [[Int]])
            let mx = try #require(x["metrics"] as? [String: Double]), my = try #require(y["metrics"] as? [String: Double])
            #expect(Set(mx.keys) == Set(my.keys))
            for (k, v) in my { #expect(abs((mx[k] ?? .nan) - v) <= 1e-5 * (1 + abs(v)), "fold \(x["fold"] ?? "?") \(k)") }
        }
        for fold in 0..<2 {
            let a = try Checkpoint.load(path: run.appendingPathComponent("fold-\(fold)/last.ckpt").path)
            let c = try Checkpoint.load(path: here.appendingPathComponent("fold-\(fold)/last.ckpt").path)
            expectClose(a.parameters, c.parameters, "fold \(fold) parameters")
        }
    }

    /// (c) Both hosts' ranks stream their images over HTTP from a server on the first host;
    /// each rank's disk cache is on its own host; failures from both hosts reach RUN_DIR.
    @Test func ranksOnBothHostsStreamFromAServerOnTheFirst() throws {
        guard FaultServer.available else { print("skipped: python3 not found for the test HTTP server"); return }
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 128, test: 8)
        let cluster = try NetnsCluster(hosts: hosts); defer { cluster.stop() }
        let server = try FaultServer(host: cluster.address(0), launcher: cluster.command(on: "node-a"))
        defer { server.stop() }
        let lines = try String(contentsOfFile: data.train, encoding: .utf8).split(separator: "\n")
        var manifest: [String] = [], missing: Set<String> = []
        for (i, line) in lines.enumerated() {
            let rec = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let name = "img\(i).png"
            try server.put(name, Array(try Data(contentsOf: dir.appendingPathComponent(rec["image"] as! String))))
            let target = i % 8 == 5 ? name + "?fault=404" : name
            if i % 8 == 5 { missing.insert(server.url(target)) }
            manifest.append(String(decoding: try JSONSerialization.data(withJSONObject: ["image": server.url(target), "label": rec["label"]!],
                                                                         options: [.withoutEscapingSlashes]), as: UTF8.self))
        }
        let urls = dir.appendingPathComponent("urls.jsonl").path
        try (manifest.joined(separator: "\n") + "\n").write(toFile: urls, atomically: true, encoding: .utf8)
        let r = try cluster.mpirun(ranks: 2, ["train", "--train", urls, "--cache-disk", "256MB", "--max-bad-fraction", "0.3",
                                              "--out", cluster.local("run")] + common)
        #expect(r.status == 0, "\(r.stderr)\n\(r.stdout)")
        #expect(r.stdout.contains("hosts: node-a (rank 0), node-b (rank 1)"), "\(r.stdout)")
        let run = cluster.disk("node-a").appendingPathComponent("run")
        let failed = try String(contentsOf: run.appendingPathComponent("failed_samples.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(Set(failed.map { $0["image"] as! String }) == missing)
        #expect(Set(failed.compactMap { $0["rank"] as? Int }) == [0, 1])   // both hosts fetched, both reported
        let history = try Fixtures.history(run)
        #expect(history.count == 2)
        #expect(history.allSatisfy { $0["skipped"] as? Int == missing.count })
        // Each rank's disk cache holds what it fetched, on its own host's disk.
        for (rank, host) in hosts.enumerated() {
            let cache = cluster.disk(host).appendingPathComponent("tmp/distrainer-cache/rank-\(rank)")
            #expect(!files(cache).isEmpty, "no cached images in \(cache.path)")
            let other = cluster.disk(hosts[1 - rank]).appendingPathComponent("tmp/distrainer-cache/rank-\(rank)")
            #expect(!FileManager.default.fileExists(atPath: other.path))
        }
        #expect(!FileManager.default.fileExists(atPath: cluster.disk("node-b").appendingPathComponent("run").path))
    }
}
