import Testing
import Foundation
import Model
import TestSupport

/// `--overlap-allreduce on` (buckets started inside backward as they complete) against `off`
/// (all after backward) on 2 real MPI ranks.
@Suite(.serialized) struct OverlapAllreduceTests {
    /// Same buckets, same sums: the parameters after training are bitwise identical, also with
    /// accumulation (only the last micro-batch's backward starts allreduces) and momentum.
    @Test func overlapOnAndOffGiveIdenticalParameters() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let data = try Fixtures.dataset(in: dir, train: 256, test: 10)
        // 0.02 MB buckets: refcnn's gradient is reduced in many buckets, most started during backward.
        let base = ["train", "--train", data.train, "--epochs", "2", "--batch-size", "32", "--accum-steps", "2",
                    "--bucket-mb", "0.02", "--model", "refcnn", "--image-size", "28", "--channels", "1",
                    "--lr", "0.05", "--seed", "9", "--quiet"]
        var params: [[Float]] = []
        for mode in ["on", "off"] {
            let out = dir.appendingPathComponent(mode)
            let r = try TestSupport.mpirun(2, base + ["--overlap-allreduce", mode, "--out", out.path])
            #expect(r.status == 0, "\(r.stderr)")
            let ckpt = try Checkpoint.load(path: out.appendingPathComponent("last.ckpt").path)
            #expect(ckpt.header.step == 8)   // 256 images, global batch 32 × 2 micro-batches, 2 epochs
            params.append(ckpt.parameters)
            let h = try Fixtures.history(out)
            #expect(h.count == 2)
            for line in h {
                #expect(line["allreduce_per_step"] as? Double == 1)
                let total = line["allreduce_fraction"] as? Double ?? -1, wait = line["allreduce_wait_fraction"] as? Double ?? -1
                #expect(total > 0 && wait > 0 && wait <= total + 1e-9, "\(line)")
                if mode == "off" { #expect(abs(wait - total) < 1e-9) }
            }
        }
        #expect(params[0].count == params[1].count && params[0].count > 0)
        #expect(params[0] == params[1], "max difference \(zip(params[0], params[1]).map { abs($0 - $1) }.max() ?? 0)")
    }

    @Test func rejectsAnUnknownMode() throws {
        let r = try TestSupport.distrainer(["train", "--train", "x.jsonl", "--out", "/nonexistent", "--overlap-allreduce", "maybe"])
        #expect(r.status != 0)
        #expect(r.stderr.contains("overlap-allreduce") && r.stderr.contains("maybe"), "\(r.stderr)")
    }
}
