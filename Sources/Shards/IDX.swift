import CZlib
import Dispatch
import Foundation
import Support

/// An IDX file that cannot be read, or an import that cannot proceed; `path` names the file
/// (or folder) at fault.
public struct IDXError: Error, CustomStringConvertible, Equatable {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) { self.path = path; self.reason = reason }
    public var description: String { "\(path): \(reason)" }
}

/// Reading IDX files (the MNIST family's format: big-endian magic `0x0000 08 nd`, then `nd`
/// big-endian UInt32 dimensions, then the unsigned bytes). Gzipped and raw files are both read
/// through zlib's `gzread`, which passes raw files through unchanged.
public enum IDX {
    /// Magic number of an unsigned-byte IDX file with 3 dimensions (images).
    public static let imagesMagic: UInt32 = 0x0000_0803
    /// Magic number of an unsigned-byte IDX file with 1 dimension (labels).
    public static let labelsMagic: UInt32 = 0x0000_0801

    /// Reads an images file: `count` images of `rows`×`cols` bytes, row-major, one after another.
    public static func readImages(path: String) throws -> (count: Int, rows: Int, cols: Int, pixels: [UInt8]) {
        let (dims, data) = try read(path: path, magic: imagesMagic, what: "images (3-D unsigned-byte IDX)")
        return (dims[0], dims[1], dims[2], data)
    }

    /// Reads a labels file: one byte per item.
    public static func readLabels(path: String) throws -> [UInt8] {
        try read(path: path, magic: labelsMagic, what: "labels (1-D unsigned-byte IDX)").data
    }

    /// Largest payload accepted (a sanity bound on the header's dimensions): 16 GiB.
    static let maxPayload = 1 << 34

    static func read(path: String, magic expected: UInt32, what: String) throws -> (dims: [Int], data: [UInt8]) {
        guard let gz = gzopen(path, "rb") else {
            let e = errno
            throw IDXError(path: path, reason: e != 0 ? String(cString: strerror(e)) : "cannot open")
        }
        defer { gzclose(gz) }
        gzbuffer(gz, 1 << 18)

        func fail(_ reason: String) -> IDXError { IDXError(path: path, reason: reason) }
        func zlibError() -> String? {
            var code: Int32 = 0
            let msg = gzerror(gz, &code)
            guard code != Z_OK else { return nil }
            var text = msg.map { String(cString: $0) } ?? "zlib error \(code)"
            if text.hasPrefix(path + ": ") { text.removeFirst(path.count + 2) }  // zlib prefixes the path
            return code == Z_BUF_ERROR ? "truncated gzip stream (\(text))" : "gzip error: \(text)"
        }
        /// Reads up to `count` bytes into `dst`; returns how many were read.
        func readFully(_ dst: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
            var got = 0
            while got < count {
                let n = gzread(gz, dst + got, UInt32(min(count - got, 1 << 30)))
                if n < 0 { throw fail(zlibError() ?? "read error") }
                if n == 0 { break }
                got += Int(n)
            }
            if let err = zlibError() { throw fail(err) }
            return got
        }
        func readU32(_ field: String) throws -> UInt32 {
            var b = [UInt8](repeating: 0, count: 4)
            let n = try b.withUnsafeMutableBytes { try readFully($0.baseAddress!, 4) }
            if n == 0 && field == "magic number" { throw fail("empty file, expected IDX \(what)") }
            guard n == 4 else { throw fail("truncated header (reading the \(field))") }
            return UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
        }

        let magic = try readU32("magic number")
        guard magic == expected else {
            var hint = ""
            if magic == imagesMagic { hint = " (this is an images file)" }
            if magic == labelsMagic { hint = " (this is a labels file)" }
            if magic >> 16 != 0 { hint = " (not an IDX file)" }
            throw fail("bad magic number 0x\(hex8(magic)), expected 0x\(hex8(expected)) for \(what)\(hint)")
        }
        let ndim = Int(expected & 0xFF)
        var dims: [Int] = []
        var total = 1
        for d in 0..<ndim {
            let v = Int(try readU32("size of dimension \(d)"))
            guard v > 0 else { throw fail("dimension \(d) is 0") }
            let (p, overflow) = total.multipliedReportingOverflow(by: v)
            guard !overflow, p <= maxPayload else { throw fail("dimensions \(dims + [v]) are implausibly large") }
            total = p
            dims.append(v)
        }

        // Read in chunks so a lying header on a short file does not allocate its claim up front.
        var data = [UInt8]()
        data.reserveCapacity(min(total, 1 << 26))
        while data.count < total {
            let chunk = min(total - data.count, 1 << 24)
            let before = data.count
            data.append(contentsOf: repeatElement(0, count: chunk))
            let n = try data.withUnsafeMutableBytes { try readFully($0.baseAddress! + before, chunk) }
            if n < chunk {
                let have = before + n
                throw fail("truncated: the header declares dimensions \(dims) (\(total) bytes of data) but the file has only \(have)")
            }
        }
        var probe: UInt8 = 0
        let extra = try readFully(&probe, 1)
        if extra > 0 { throw fail("trailing data after the \(total) bytes declared by the header \(dims)") }
        return (dims, data)
    }

    static func hex8(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}

/// Converts an IDX images + labels pair into PNG files and a JSONL manifest.
public enum IDXImporter {
    /// Fashion-MNIST's class names in label order.
    public static let fashionMNISTClasses = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                             "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    /// MNIST's class names (the digits) in label order.
    public static let mnistClasses = (0...9).map { String($0) }

    /// Images per subfolder.
    public static let filesPerFolder = 10_000

    /// Writes the first `limit` (default all) images as 8-bit gray PNGs
    /// `outDir/<name>/<folder>/<index>.png` and the manifest `outDir/<name>.jsonl`, one line per
    /// image in file order:
    ///
    ///     {"id": "train-00042", "image": "train/0/00042.png", "label": "Pullover", "label_id": 2}
    ///
    /// `index` is zero-padded to at least 5 digits (more when needed); `folder` is
    /// `index / 10000` (so no folder holds more than 10,000 files) padded to the remaining
    /// digits. `image` is relative to `outDir` (the manifest's folder); `label` is
    /// `classes[label_id]`. PNGs are written in parallel; the manifest is written atomically
    /// last, after the PNGs are flushed to disk, so an existing manifest always refers to
    /// complete files. PNGs left over from an earlier, larger import are not deleted.
    /// Returns the number of images written.
    public static func run(images: String, labels: String, classes: [String], outDir: String,
                           name: String, limit: Int?) throws -> Int {
        // Arguments.
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), !name.contains("\0") else {
            throw IDXError(path: outDir, reason: "invalid dataset name \(JSONWriter.string(name)) (must be a plain file name)")
        }
        guard !classes.isEmpty else { throw IDXError(path: labels, reason: "no class names given") }
        if let i = classes.firstIndex(where: { $0.isEmpty }) {
            throw IDXError(path: labels, reason: "class name \(i) is empty")
        }
        if Set(classes).count != classes.count {
            throw IDXError(path: labels, reason: "duplicate class names in \(classes)")
        }
        if let limit, limit < 0 { throw IDXError(path: images, reason: "limit must be >= 0, not \(limit)") }

        // Inputs.
        let labelBytes = try IDX.readLabels(path: labels)
        let (count, rows, cols, pixels) = try IDX.readImages(path: images)
        guard count == labelBytes.count else {
            throw IDXError(path: images, reason: "has \(count) images but \(labels) has \(labelBytes.count) labels")
        }
        let n = min(limit ?? count, count)
        for i in 0..<n where Int(labelBytes[i]) >= classes.count {
            throw IDXError(path: labels, reason: "label \(labelBytes[i]) of item \(i) is out of range for \(classes.count) classes")
        }

        // Layout.
        let digits = max(5, String(max(n - 1, 0)).count)
        let folderDigits = digits - 4
        @Sendable func padded(_ v: Int, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        @Sendable func relativePath(_ i: Int) -> String {
            "\(name)/\(padded(i / filesPerFolder, folderDigits))/\(padded(i, digits)).png"
        }
        let fm = FileManager.default
        let folderCount = (n + filesPerFolder - 1) / filesPerFolder
        do {
            try fm.createDirectory(atPath: outDir, withIntermediateDirectories: true)
            for f in 0..<folderCount {
                try fm.createDirectory(atPath: "\(outDir)/\(name)/\(padded(f, folderDigits))",
                                       withIntermediateDirectories: true)
            }
        } catch {
            throw IDXError(path: outDir, reason: "cannot create folders: \(error.localizedDescription)")
        }

        // PNGs, in parallel blocks.
        let failures = FirstError()
        let block = 256
        let blocks = (n + block - 1) / block
        let imageSize = rows * cols
        DispatchQueue.concurrentPerform(iterations: blocks) { b in
            if failures.hasError { return }
            for i in (b * block)..<min(n, (b + 1) * block) {
                let path = "\(outDir)/\(relativePath(i))"
                do {
                    let start = i * imageSize
                    let image = Image(width: cols, height: rows, channels: 1,
                                      pixels: Array(pixels[start..<(start + imageSize)]))
                    let png = try PNGCodec.encode(image)
                    try writeFile(png, to: path)
                } catch {
                    failures.record(error)
                    return
                }
            }
        }
        if let error = failures.error { throw error }
        flushToDisk(outDir)

        // Manifest.
        var out = [UInt8]()
        out.reserveCapacity(n * 96)
        for i in 0..<n {
            let y = Int(labelBytes[i])
            out.append(contentsOf: Array("{\"id\": ".utf8))
            JSONWriter.appendString("\(name)-\(padded(i, digits))", to: &out)
            out.append(contentsOf: Array(", \"image\": ".utf8))
            JSONWriter.appendString(relativePath(i), to: &out)
            out.append(contentsOf: Array(", \"label\": ".utf8))
            JSONWriter.appendString(classes[y], to: &out)
            out.append(contentsOf: Array(", \"label_id\": \(y)}\n".utf8))
        }
        let manifestPath = manifestPath(outDir: outDir, name: name)
        try AtomicFile.write(Data(out), to: manifestPath)
        return n
    }

    /// Where `run` writes the manifest.
    public static func manifestPath(outDir: String, name: String) -> String {
        outDir.hasSuffix("/") ? "\(outDir)\(name).jsonl" : "\(outDir)/\(name).jsonl"
    }

    static func writeFile(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileWriteError.open(path: path, errno: errno) }
        do {
            try bytes.withUnsafeBytes { try AtomicFile.writeAll(fd, $0, path: path) }
        } catch {
            _ = sysClose(fd)
            throw error
        }
        guard sysClose(fd) == 0 else { throw FileWriteError.write(path: path, errno: errno) }
    }

    /// Flushes the file system holding `dir` (all the PNGs just written) to disk.
    static func flushToDisk(_ dir: String) {
        // syncfs(2) would limit this to one file system but is not exported by Swift's Glibc
        // module; sync(2) waits for completion on Linux and costs one call for all files.
        _ = dir
        sync()
    }
}

/// The first error thrown by any of several concurrent workers.
final class FirstError: @unchecked Sendable {
    private let lock = NSLock()
    private var first: Error?

    var hasError: Bool { lock.lock(); defer { lock.unlock() }; return first != nil }
    var error: Error? { lock.lock(); defer { lock.unlock() }; return first }

    func record(_ error: Error) {
        lock.lock()
        if first == nil { first = error }
        lock.unlock()
    }
}
