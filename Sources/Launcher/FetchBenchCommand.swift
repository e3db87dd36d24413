import ArgumentParser
import Foundation
import Shards

/// `distrainer fetch-bench`: images per second of one rank's input path — fetching, decoding,
/// and both through an `ImageCache` with its tiers off (every access a miss).
struct FetchBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch-bench",
        abstract: "Time fetching and decoding a list of images (paths or URLs) on one rank; prints JSON.",
        discussion: """
            Reads references (paths, file: or http(s) URLs), one per line, from --list, and times: \
            fetching them all (HTTPFetcher, --concurrency transfers in flight), decoding them from \
            memory (one thread), and fetch + decode + resize to --image-size through an ImageCache \
            whose memory and disk tiers are off, in batches of --batch. Each figure is the best of \
            --passes passes. scripts/bench_fetch.sh runs it against the test server next to Pillow.
            """)

    @Option(help: "File with one image reference per line.") var list: String
    @Option(help: "Channels to decode to (1 or 3).") var channels = 3
    @Option(help: "Model input size for the cache path.") var imageSize = 224
    @Option(help: "Transfers in flight.") var concurrency = 16
    @Option(help: "Images per cache batch.") var batch = 64
    @Option(help: "Decode threads of the cache path.") var decodeWorkers = 1
    @Option(help: "Passes (the best is reported).") var passes = 3

    func run() throws {
        let text = try String(contentsOfFile: list, encoding: .utf8)
        let refs = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
        guard !refs.isEmpty else { throw ValidationError("\(list): no references") }
        var fetchOptions = FetchOptions()
        fetchOptions.concurrency = concurrency

        func best(_ body: () throws -> Void) rethrows -> Double {
            var fastest = Double.infinity
            for _ in 0..<max(passes, 1) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                try body()
                fastest = min(fastest, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
            return fastest
        }

        let fetcher = try HTTPFetcher(options: fetchOptions)
        var payloads: [[UInt8]] = []
        let fetchSeconds = try best {
            payloads = try fetcher.fetch(refs).map { try $0.get() }
        }
        let bytes = payloads.reduce(0) { $0 + $1.count }

        let decodeSeconds = try best {
            for (ref, b) in zip(refs, payloads) { _ = try ImageDecoder.decode(b, channels: channels, source: ref) }
        }

        var o = ImageCacheOptions(channels: channels, imageSize: imageSize)
        o.batchSize = batch
        o.decodeWorkers = decodeWorkers
        o.fetch = fetchOptions
        let cache = try ImageCache(options: o)
        let cacheSeconds = try best {
            for start in stride(from: 0, to: refs.count, by: batch) {
                for r in cache.images(Array(refs[start..<min(start + batch, refs.count)])) { _ = try r.get() }
            }
        }

        let n = Double(refs.count)
        let report: [String: Any] = [
            "images": refs.count, "bytes": bytes, "channels": channels, "image_size": imageSize,
            "concurrency": concurrency, "batch": batch, "decode_workers": decodeWorkers, "passes": passes,
            "fetch_images_per_s": (n / fetchSeconds).rounded(),
            "fetch_mb_per_s": (Double(bytes) / fetchSeconds / 1e6 * 10).rounded() / 10,
            "decode_images_per_s": (n / decodeSeconds).rounded(),
            "fetch_decode_resize_images_per_s": (n / cacheSeconds).rounded(),
        ]
        let data = try JSONSerialization.data(withJSONObject: report, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    }
}
