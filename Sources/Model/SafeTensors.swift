import Foundation

/// Errors reading a safetensors file; each names the file and, where it applies, the tensor.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    case unreadable(path: String)
    case truncated(path: String, reason: String)
    case invalidHeader(path: String, reason: String)
    case invalidTensor(path: String, tensor: String, reason: String)
    case unsupportedDType(path: String, tensor: String, dtype: String)
    case missingTensor(path: String, tensor: String)

    public var description: String {
        switch self {
        case let .unreadable(path): return "\(path): cannot read file"
        case let .truncated(path, reason): return "\(path): truncated safetensors file: \(reason)"
        case let .invalidHeader(path, reason): return "\(path): invalid safetensors header: \(reason)"
        case let .invalidTensor(path, tensor, reason): return "\(path): tensor '\(tensor)': \(reason)"
        case let .unsupportedDType(path, tensor, dtype):
            return "\(path): tensor '\(tensor)' has dtype \(dtype); only F32, F16, BF16 and F64 convert to Float"
        case let .missingTensor(path, tensor): return "\(path): no tensor '\(tensor)'"
        }
    }
}

/// A safetensors file (the Hugging Face format PyTorch checkpoints are commonly shared in),
/// read and validated; tensors convert to Float on request.
///
/// Layout: u64 little-endian header length N, N bytes of JSON
/// `{"name": {"dtype": "F32", "shape": [64, 3, 7, 7], "data_offsets": [begin, end]}, …,
/// "__metadata__": {…}}`, then the raw little-endian data; offsets are relative to the end of
/// the header. Every offset, size and shape is checked against the file before any read, so a
/// crafted or truncated file gives an error, never a crash.
///
///     let file = try SafeTensors(path: "resnet18.safetensors")
///     let w = try file.floats("conv1.weight")          // [Float], 64·3·7·7 values
public struct SafeTensors {
    /// One tensor's header entry.
    public struct Entry: Equatable, Sendable {
        public var dtype: String
        public var shape: [Int]
        /// Byte range within the data section.
        public var range: Range<Int>
    }

    public let path: String
    /// Tensors by name (the `__metadata__` entry excluded).
    public let entries: [String: Entry]
    /// The free-form `__metadata__` strings.
    public let metadata: [String: String]
    private let data: Data
    private let dataStart: Int

    /// Bytes per element of every dtype the format defines.
    static let elementSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
        "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
    ]

    public init(path: String) throws {
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .mappedIfSafe) else {
            throw SafeTensorsError.unreadable(path: path)
        }
        try self.init(data: data, path: path)
    }

    public init(data: Data, path: String = "<memory>") throws {
        self.path = path
        self.data = data
        let total = data.count
        guard total >= 8 else { throw SafeTensorsError.truncated(path: path, reason: "\(total) bytes, no header length") }
        let n = data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian }
        guard n >= 2, n <= UInt64(total - 8) else {
            throw SafeTensorsError.truncated(path: path, reason: "header length \(n) but only \(total - 8) bytes follow")
        }
        let headerLength = Int(n)
        dataStart = 8 + headerLength
        let dataLength = total - dataStart
        let json = data.subdata(in: data.startIndex + 8..<data.startIndex + dataStart)
        let raw: [String: HeaderValue]
        do { raw = try JSONDecoder().decode([String: HeaderValue].self, from: json) } catch {
            throw SafeTensorsError.invalidHeader(path: path, reason: "not a JSON object of tensor entries (\(error))")
        }
        var entries: [String: Entry] = [:], metadata: [String: String] = [:]
        for (name, value) in raw {
            switch value {
            case let .metadata(m):
                guard name == "__metadata__" else {
                    throw SafeTensorsError.invalidTensor(path: path, tensor: name, reason: "entry is not {dtype, shape, data_offsets}")
                }
                metadata = m
            case let .tensor(dtype, shape, offsets):
                func bad(_ reason: String) -> SafeTensorsError { .invalidTensor(path: path, tensor: name, reason: reason) }
                guard let size = Self.elementSizes[dtype] else { throw bad("unknown dtype '\(dtype)'") }
                guard shape.allSatisfy({ $0 >= 0 }) else { throw bad("negative dimension in shape \(shape)") }
                guard offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1] else {
                    throw bad("data_offsets \(offsets) is not [begin, end] with 0 ≤ begin ≤ end")
                }
                guard offsets[1] <= dataLength else {
                    throw bad("data_offsets \(offsets) run past the end of the data (\(dataLength) bytes)")
                }
                var bytes = size, overflow = false
                for d in shape where !overflow { (bytes, overflow) = bytes.multipliedReportingOverflow(by: d) }
                guard !overflow, bytes == offsets[1] - offsets[0] else {
                    throw bad("shape \(shape) of \(dtype) does not fill data_offsets \(offsets)")
                }
                entries[name] = Entry(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
            }
        }
        // Tensors must not overlap (the format stores them back to back).
        let sorted = entries.sorted { ($0.value.range.lowerBound, $0.value.range.upperBound) < ($1.value.range.lowerBound, $1.value.range.upperBound) }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.value.range.upperBound > b.value.range.lowerBound {
            throw SafeTensorsError.invalidTensor(path: path, tensor: b.key, reason: "its data overlaps tensor '\(a.key)'")
        }
        self.entries = entries
        self.metadata = metadata
    }

    /// The named tensor's values converted to Float (F32 as is; F16, BF16, F64 converted).
    public func floats(_ name: String) throws -> [Float] {
        guard let e = entries[name] else { throw SafeTensorsError.missingTensor(path: path, tensor: name) }
        let count = e.shape.reduce(1, *)
        return try data.withUnsafeBytes { raw -> [Float] in
            let base = dataStart + e.range.lowerBound
            switch e.dtype {
            case "F32":
                return (0..<count).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: base + 4 * $0, as: UInt32.self).littleEndian) }
            case "F16":
                return (0..<count).map { Self.half(raw.loadUnaligned(fromByteOffset: base + 2 * $0, as: UInt16.self).littleEndian) }
            case "BF16":
                return (0..<count).map {
                    Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: base + 2 * $0, as: UInt16.self).littleEndian) << 16)
                }
            case "F64":
                return (0..<count).map {
                    Float(Double(bitPattern: raw.loadUnaligned(fromByteOffset: base + 8 * $0, as: UInt64.self).littleEndian))
                }
            default:
                throw SafeTensorsError.unsupportedDType(path: path, tensor: name, dtype: e.dtype)
            }
        }
    }

    /// IEEE 754 binary16 → Float, including subnormals, infinities and NaN.
    static func half(_ h: UInt16) -> Float {
        let sign = UInt32(h >> 15) << 31
        let exponent = Int((h >> 10) & 0x1F), mantissa = UInt32(h & 0x3FF)
        switch exponent {
        case 0:
            // ±0 or subnormal: mantissa · 2^−24
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign != 0 ? -magnitude : magnitude
        case 31:
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        default:
            return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
        }
    }

    /// A safetensors file of F32 tensors, in the given order (what `Network.exportSafeTensors`
    /// writes; also how tests build files).
    public static func serialize(_ tensors: [(name: String, shape: [Int], values: [Float])],
                                 metadata: [String: String] = [:]) -> Data {
        var header: [String] = []
        if !metadata.isEmpty {
            let fields = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            header.append("\"__metadata__\":{\(fields.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            let bytes = 4 * t.values.count
            header.append("\(jsonString(t.name)):{\"dtype\":\"F32\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var json = Array("{\(header.joined(separator: ","))}".utf8)
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }   // align the data to 8 bytes
        var out = Data()
        out.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        for t in tensors {
            for v in t.values { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
        }
        return out
    }

    private static func jsonString(_ s: String) -> String {
        let data = (try? JSONEncoder().encode(s)) ?? Data("\"\"".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// A header value: a tensor entry or the `__metadata__` string map.
    private enum HeaderValue: Decodable {
        case tensor(dtype: String, shape: [Int], offsets: [Int])
        case metadata([String: String])

        private enum Keys: String, CodingKey { case dtype, shape, data_offsets }

        init(from decoder: Decoder) throws {
            if let c = try? decoder.container(keyedBy: Keys.self), c.contains(.dtype) {
                self = .tensor(dtype: try c.decode(String.self, forKey: .dtype), shape: try c.decode([Int].self, forKey: .shape),
                               offsets: try c.decode([Int].self, forKey: .data_offsets))
            } else {
                self = .metadata(try [String: String](from: decoder))
            }
        }
    }
}
