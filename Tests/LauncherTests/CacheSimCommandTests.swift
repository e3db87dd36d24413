import Foundation
import Testing
import TestSupport

@Suite struct CacheSimCommandTests {
    @Test func reportsHitRatesPerPolicyAndSize() throws {
        let r = try TestSupport.distrainer(["cache-sim", "--samples", "2000", "--ranks", "2", "--epochs", "3",
                                            "--cache-fraction", "0.5,1", "--seed", "3", "--global-batch", "64", "--virtual-shards", "8"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(json["working_set"] as? Int == 1000)
        let results = try #require(json["results"] as? [[String: Any]])
        #expect(results.count == 2)
        for row in results {
            let lru = try #require(row["lru"] as? Double), ahead = try #require(row["look_ahead"] as? Double)
            let belady = try #require(row["belady"] as? Double), f = try #require(row["cache_fraction"] as? Double)
            #expect(lru <= ahead && ahead <= belady && belady <= f + 1e-9, "\(row)")
        }
        #expect((results[1]["lru"] as? Double) == 1)

        let bad = try TestSupport.distrainer(["cache-sim", "--samples", "100", "--cache-fraction", "0.5,x"])
        #expect(bad.status != 0 && bad.stderr.contains("--cache-fraction"))
    }
}
