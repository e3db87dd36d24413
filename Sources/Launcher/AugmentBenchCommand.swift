import ArgumentParser
import Foundation
import Shards

struct AugmentBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "augment-bench",
        abstract: "Time training-time augmentation per image on one thread; prints one JSON line per preset.",
        discussion: """
        Each image is a cached image at the model size (random pixels); one measurement covers what
        a loader thread does after the cache: the augmentation (plus the partner's, when mixed),
        the mix and the normalisation. `normalize-only` is the path without augmentation.
        Figures are the median over --windows windows of --images images: wall time and the
        thread's CPU time (steadier on a shared machine).
        """)

    @Option(help: "Image side (the cached and model size).") var imageSize = 224
    @Option(help: "Channels.") var channels = 3
    @Option(help: "Presets to time (none = normalise only), comma-separated; or 'all'.") var presets = "all"
    @Option(help: "Extra configuration timed as 'custom': --randaugment-style N,M.") var randaugment: String?
    @Option(help: "Images per window.") var images = 200
    @Option(help: "Timed windows.") var windows = 5

    func run() throws {
        var configs: [(String, AugmentOptions)] = []
        let names = presets == "all" ? AugmentOptions.presetNames : presets.split(separator: ",").map(String.init)
        for n in names {
            guard let o = AugmentOptions.preset(n) else { throw ValidationError("unknown preset \(n)") }
            configs.append((n == "none" ? "normalize-only" : n, o))
        }
        var jitter = AugmentOptions(); jitter.brightness = 0.4; jitter.contrast = 0.4; jitter.saturation = 0.4; jitter.hue = 0.1
        var geo = AugmentOptions(); geo.cropScale = [0.08, 1]; geo.hflip = 0.5; geo.rotate = 15
        configs += [("crop+flip+rotate", geo), ("color-jitter 0.4,0.4,0.4,0.1", jitter)]
        if let randaugment {
            let v: [Int] = try parseList(randaugment, name: "randaugment")
            var r = AugmentOptions(); r.randAugmentN = v.first ?? 2; r.randAugmentM = v.count > 1 ? v[1] : 9
            configs.append(("randaugment \(r.randAugmentN),\(r.randAugmentM)", r))
        }
        let size = imageSize, c = channels, count = c * size * size
        var rng = SystemRandomNumberGenerator()
        let pool = (0..<16).map { _ in Image(width: size, height: size, channels: c, pixels: (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }) }
        let out = UnsafeMutablePointer<Float>.allocate(capacity: count)
        let partner = UnsafeMutablePointer<Float>.allocate(capacity: count)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: size * size)
        defer { out.deallocate(); partner.deallocate(); scratch.deallocate() }
        let mean: [Float] = [0.5], std: [Float] = [0.5]
        for (name, o) in configs {
            let aug = Augmenter(options: o, seed: 1, size: size, channels: c)
            let mixer = SampleMixer(options: o, seed: 1, population: 1_000_000, size: size)
            let plain = !o.transformsImages && !o.mixes
            var sample = 0
            func one() {
                let image = pool[sample % pool.count]
                if plain {
                    Preprocess.resizeNormalize(image, size: size, mean: mean, std: std, into: out)
                } else {
                    aug.apply(image, sample: sample, epoch: 0, into: out, scratch: scratch)
                    if let d = mixer.draw(sample: sample, epoch: 0) {
                        aug.apply(pool[d.partner % pool.count], sample: d.partner, epoch: 0, into: partner, scratch: scratch)
                        mixer.mix(out, partner: partner, draw: d, channels: c)
                    }
                    for i in 0..<count { out[i] = (out[i] - 0.5) * 2 }
                }
                sample += 1
            }
            for _ in 0..<min(images, 20) { one() }   // warm-up
            var perImage: [Double] = [], cpu: [Double] = []
            for _ in 0..<windows {
                let t0 = DispatchTime.now().uptimeNanoseconds, c0 = threadCPUNanos()
                for _ in 0..<images { one() }
                cpu.append(Double(threadCPUNanos() - c0) / 1e3 / Double(images))
                perImage.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e3 / Double(images))
            }
            perImage.sort(); cpu.sort()
            let line: [String: Any] = ["config": name, "augment": o.summary, "image_size": size, "channels": c,
                                       "us_per_image": perImage[perImage.count / 2], "us_per_image_min": perImage[0],
                                       "cpu_us_per_image": cpu[cpu.count / 2],
                                       "images_per_sec_per_thread": 1e6 / perImage[perImage.count / 2]]
            let data = try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}

/// CPU time of the calling thread in nanoseconds.
private func threadCPUNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
