import Testing
import Foundation
import TestSupport

/// Training from http URLs through each rank's cache, against a local server that injects faults.
@Suite(.serialized) struct URLTrainingTests {
    @Test func twoRanksTrainFromURLsWithFaults() throws {
        guard FaultServer.available else { print("skipped: python3 not found for the test HTTP server"); return }
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 96, test: 16)
        let server = try FaultServer()
        defer { server.stop() }
        let lines = try String(contentsOfFile: data.train, encoding: .utf8).split(separator: "\n")
        var manifest: [String] = [], permanent: Set<String> = [], flaky: [String] = [], good: [String] = []
        for (i, line) in lines.enumerated() {
            let rec = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            let name = "img\(i).png"
            try server.put(name, Array(try Data(contentsOf: dir.appendingPathComponent(rec["image"] as! String))))
            var target = name
            switch i % 16 {
            case 3: target += "?fault=404"; permanent.insert(server.url(target))
            case 7: target += "?fault=truncate"; permanent.insert(server.url(target))
            case 11: target += "?fault=500&times=1"; flaky.append(target)
            default: good.append(target)
            }
            manifest.append(String(decoding: try JSONSerialization.data(withJSONObject: ["image": server.url(target), "label": rec["label"]!],
                                                                         options: [.withoutEscapingSlashes]), as: UTF8.self))
        }
        let urls = dir.appendingPathComponent("urls.jsonl").path
        try (manifest.joined(separator: "\n") + "\n").write(toFile: urls, atomically: true, encoding: .utf8)
        let run = dir.appendingPathComponent("run"), cache = dir.appendingPathComponent("cache")
        let r = try TestSupport.mpirun(2, ["train", "--train", urls, "--val", data.test, "--model", "refcnn", "--image-size", "28",
                                           "--channels", "1", "--epochs", "2", "--batch-size", "32", "--cache-mem", "64MB",
                                           "--cache-disk", "256MB", "--cache-dir", cache.path, "--max-bad-fraction", "0.2",
                                           "--out", run.path, "--quiet"], timeout: 240)
        #expect(r.status == 0, "\(r.stderr)")
        // Exactly the permanently failing URLs are listed, once per epoch, with a reason.
        let failed = try String(contentsOf: run.appendingPathComponent("failed_samples.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        #expect(Set(failed.map { $0["image"] as! String }) == permanent)
        #expect(failed.count == 2 * permanent.count)
        #expect(failed.allSatisfy { ($0["reason"] as? String)?.isEmpty == false && $0["rank"] is Int && $0["epoch"] is Int })
        // Every sample of an epoch was either trained on or listed: trained + failed = scheduled.
        let history = try Fixtures.history(run)
        for h in history { #expect(h["skipped"] as? Int == permanent.count) }
        // The 500s were retried and trained; in epoch 2 no cached URL was fetched again.
        for t in flaky { #expect(try server.count("/" + t) == 2, "\(t)") }
        for t in good { #expect(try server.count("/" + t) == 1, "\(t)") }
        #expect(history.count == 2)
        #expect((history.last?["cache_hit_rate"] as? Double ?? 0) > 0.5)
    }
}
