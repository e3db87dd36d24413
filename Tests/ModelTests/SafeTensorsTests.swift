import Testing
import Foundation
@testable import Model
import TestSupport
import Support

/// The safetensors reader on files written by hand, and loading pretrained weights by name.
@Suite struct SafeTensorsTests {
    /// A file from a literal JSON header and raw data bytes.
    func file(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> Data {
        let json = Array(header.utf8)
        var out = Data()
        withUnsafeBytes(of: (declaredLength ?? UInt64(json.count)).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: json)
        out.append(contentsOf: data)
        return out
    }

    func bytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
        values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    }

    func expectError(_ data: Data, _ matches: (SafeTensorsError) -> Bool, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try SafeTensors(data: data, path: "t.safetensors")
            Issue.record("expected an error", sourceLocation: sourceLocation)
        } catch let error as SafeTensorsError {
            #expect(matches(error), "\(error)", sourceLocation: sourceLocation)
            #expect(error.description.contains("t.safetensors"), sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func readsF32F16BF16AndF64() throws {
        let f32: [Float] = [1, -2.5, 3.25, 0]
        let data = bytes(f32.map(\.bitPattern))
            + bytes([UInt16(0x3C00), 0xC000, 0x3800, 0x7BFF, 0x0001, 0x7C00])   // 1, −2, 0.5, 65504, 2^−24, +∞
            + bytes([UInt16(0x3F80), 0xC040])                                     // bf16 1, −3
            + bytes([Double(0.125).bitPattern])
        let header = """
        {"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"h":{"dtype":"F16","shape":[6],"data_offsets":[16,28]},\
        "b":{"dtype":"BF16","shape":[2],"data_offsets":[28,32]},"d":{"dtype":"F64","shape":[],"data_offsets":[32,40]},\
        "__metadata__":{"format":"pt"}}
        """
        let st = try SafeTensors(data: file(header: header, data: data))
        #expect(try st.floats("a") == f32)
        #expect(st.entries["a"]?.shape == [2, 2])
        #expect(try st.floats("h") == [1, -2, 0.5, 65504, Float(sign: .plus, exponent: -24, significand: 1), .infinity])
        #expect(try st.floats("b") == [1, -3])
        #expect(try st.floats("d") == [0.125])
        #expect(st.metadata == ["format": "pt"])
    }

    @Test func serializeRoundTrips() throws {
        let data = SafeTensors.serialize([("x.weight", [2, 3], [1, 2, 3, 4, 5, 6]), ("x.bias", [2], [-1, 0.5])], metadata: ["k": "v"])
        let st = try SafeTensors(data: data)
        #expect(try st.floats("x.weight") == [1, 2, 3, 4, 5, 6])
        #expect(try st.floats("x.bias") == [-1, 0.5])
        #expect(st.entries["x.weight"]?.shape == [2, 3])
        #expect(data.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } % 8 == 0)
    }

    @Test func truncatedFilesAreClearErrors() {
        expectError(Data([1, 2, 3])) { if case .truncated = $0 { return true }; return false }
        // Header length past the end of the file.
        expectError(file(header: "{}", data: [], declaredLength: 1000)) { if case .truncated = $0 { return true }; return false }
        // Header length so large it would overflow.
        expectError(file(header: "{}", data: [], declaredLength: .max)) { if case .truncated = $0 { return true }; return false }
        // A valid file cut short inside the data.
        let whole = SafeTensors.serialize([("w", [4], [1, 2, 3, 4])])
        expectError(whole.prefix(whole.count - 3)) { if case .invalidTensor(_, "w", let r) = $0 { return r.contains("past the end") }; return false }
    }

    @Test func offsetsPastTheEndAreRejected() {
        let header = #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        expectError(file(header: header, data: Array(repeating: 0, count: 8))) {
            if case .invalidTensor(_, "w", let r) = $0 { return r.contains("past the end") }; return false
        }
        let backwards = #"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#
        expectError(file(header: backwards, data: Array(repeating: 0, count: 8))) { if case .invalidTensor = $0 { return true }; return false }
        let negative = #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}"#
        expectError(file(header: negative, data: Array(repeating: 0, count: 8))) { if case .invalidTensor = $0 { return true }; return false }
    }

    @Test func sizesMustMatchShapes() {
        let header = #"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#
        expectError(file(header: header, data: Array(repeating: 0, count: 16))) {
            if case .invalidTensor(_, "w", let r) = $0 { return r.contains("does not fill") }; return false
        }
        let huge = #"{"w":{"dtype":"F32","shape":[4611686018427387904,4611686018427387904],"data_offsets":[0,16]}}"#
        expectError(file(header: huge, data: Array(repeating: 0, count: 16))) { if case .invalidTensor = $0 { return true }; return false }
        let overlap = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        expectError(file(header: overlap, data: Array(repeating: 0, count: 16))) {
            if case .invalidTensor(_, _, let r) = $0 { return r.contains("overlaps") }; return false
        }
    }

    @Test func wrongDTypesAreClearErrors() throws {
        let unknown = #"{"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#
        expectError(file(header: unknown, data: [0, 0, 0, 0])) {
            if case .invalidTensor(_, "w", let r) = $0 { return r.contains("unknown dtype") }; return false
        }
        // A valid integer tensor (torchvision's num_batches_tracked is I64) reads, but not as Float.
        let st = try SafeTensors(data: file(header: #"{"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}"#, data: bytes([Int64(7)])))
        #expect(throws: SafeTensorsError.unsupportedDType(path: "<memory>", tensor: "n", dtype: "I64")) { try st.floats("n") }
    }

    @Test func missingTensorIsAClearError() throws {
        let st = try SafeTensors(data: SafeTensors.serialize([("w", [1], [1])]), path: "m.safetensors")
        #expect(throws: SafeTensorsError.missingTensor(path: "m.safetensors", tensor: "fc.weight")) { try st.floats("fc.weight") }
        #expect(SafeTensorsError.missingTensor(path: "m.safetensors", tensor: "fc.weight").description == "m.safetensors: no tensor 'fc.weight'")
    }

    @Test func malformedHeadersAreClearErrors() {
        for header in ["not json", "[1,2]", #"{"w":3}"#, #"{"w":{"dtype":"F32","shape":"x","data_offsets":[0,4]}}"#,
                       #"{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, #"{"w":{"a":"b"}}"#] {
            expectError(file(header: header, data: [0, 0, 0, 0])) {
                switch $0 { case .invalidHeader, .invalidTensor: return true; default: return false }
            }
        }
    }

    /// Random corruptions of a valid file: every one reads or throws, none crashes.
    @Test func corruptedFilesNeverCrash() {
        let valid = SafeTensors.serialize([("a", [3, 2], [1, 2, 3, 4, 5, 6]), ("b", [2], [7, 8])], metadata: ["x": "y"])
        var rng = RandomSource(seed: 11)
        for trial in 0..<2000 {
            var bytes = [UInt8](valid)
            if trial % 3 == 0 {
                bytes = Array(bytes.prefix(rng.nextInt(below: bytes.count + 1)))
            } else {
                for _ in 0..<(1 + rng.nextInt(below: 4)) {
                    bytes[rng.nextInt(below: bytes.count)] = UInt8(truncatingIfNeeded: rng.next())
                }
            }
            if let st = try? SafeTensors(data: Data(bytes)) {
                for name in st.entries.keys { _ = try? st.floats(name) }
            }
        }
    }

    // MARK: Loading pretrained weights

    func tinyResNet(classes: Int, head: [Int]? = nil) throws -> Network {
        try Architectures.build(ModelSpec(architecture: "resnet18", channels: 3, imageSize: 32, classes: classes,
                                          widths: [4, 4, 8, 8], head: head))
    }

    @Test func loadsEveryTensorByName() throws {
        let dir = try TestSupport.makeTempDir(); defer { TestSupport.removeTree(dir) }
        let path = dir.appendingPathComponent("r.safetensors").path
        let source = try tinyResNet(classes: 10)
        source.initializeParameters(seed: 1)
        for i in 0..<source.store.stateCount { source.store.state[i] = Float(i) * 0.01 }
        try source.exportSafeTensors(to: path)
        let target = try tinyResNet(classes: 10)
        target.initializeParameters(seed: 2)
        let report = try target.loadPretrained(path: path, requireAll: true)
        #expect(report.isComplete && report.reinitialized.isEmpty && report.unexpected.isEmpty)
        #expect(report.loaded.count == source.store.slots.count + source.store.stateSlots.count)
        #expect(Array(target.store.parameterBuffer) == Array(source.store.parameterBuffer))
        #expect(Array(target.store.stateBuffer) == Array(source.store.stateBuffer))
    }

    @Test func reinitializesTheClassifierForAnotherClassCount() throws {
        let source = try tinyResNet(classes: 10)
        source.initializeParameters(seed: 1)
        let file = try SafeTensors(data: SafeTensors.serialize(
            source.store.slots.map { s in (s.name, s.shape, Array(source.store.parameterBuffer[s.range])) }
            + [("bn1.num_batches_tracked", [], [0]), ("extra.weight", [1], [0])]))
        let target = try tinyResNet(classes: 5)
        target.initializeParameters(seed: 2)
        let other = try tinyResNet(classes: 5)
        other.initializeParameters(seed: 3)
        let report = try target.loadPretrained(file, seed: 9)
        try other.loadPretrained(file, seed: 9)
        #expect(report.reinitialized == ["fc.weight", "fc.bias"])
        #expect(report.unexpected == ["extra.weight"])          // num_batches_tracked is not listed
        #expect(report.mismatched.isEmpty)
        #expect(report.missing.count == target.store.stateSlots.count)   // the file has no running statistics
        let conv = try #require(target.store.slots.first { $0.name == "layer2.0.conv1.weight" })
        #expect(Array(target.store.parameterBuffer[conv.range]) == Array(source.store.parameterBuffer[conv.range]))
        // The classifier is drawn afresh from its initializer with the given seed, whatever it held.
        let fc = try #require(target.store.slots.first { $0.name == "fc.weight" })
        #expect(Array(target.store.parameterBuffer[fc.range]) == Array(other.store.parameterBuffer[fc.range]))
        #expect(target.store.parameterBuffer[fc.range].allSatisfy { abs($0) <= 1 / Float(8).squareRoot() })
        #expect(report.description.contains("re-initialised"))
    }

    @Test func listsShapeAndNameMismatches() throws {
        let source = try tinyResNet(classes: 10)
        source.initializeParameters(seed: 1)
        // A file whose layer1.0.conv1 has another shape and which lacks layer4.1.bn2.bias.
        var tensors = source.store.slots.map { s in (name: s.name, shape: s.shape, values: Array(source.store.parameterBuffer[s.range])) }
        tensors.removeAll { $0.name == "layer4.1.bn2.bias" }
        let i = try #require(tensors.firstIndex { $0.name == "layer1.0.conv1.weight" })
        tensors[i] = (tensors[i].name, [4, 4, 1, 1], Array(repeating: 0, count: 16))
        let file = try SafeTensors(data: SafeTensors.serialize(tensors), path: "bad.safetensors")
        let target = try tinyResNet(classes: 10)
        target.initializeParameters(seed: 2)
        let before = Array(target.store.parameterBuffer)
        #expect(throws: ModelError.self) { try target.loadPretrained(file, requireAll: true) }
        #expect(Array(target.store.parameterBuffer) == before)   // nothing written when refusing
        let report = try target.loadPretrained(file)
        #expect(report.mismatched == ["layer1.0.conv1.weight: file [4, 4, 1, 1] F32, model [4, 4, 3, 3]"])
        #expect(report.missing.contains("layer4.1.bn2.bias"))
        #expect(!report.isComplete)
    }

    @Test func headTensorsAreReportedMissing() throws {
        let source = try tinyResNet(classes: 10)
        source.initializeParameters(seed: 1)
        let file = try SafeTensors(data: SafeTensors.serialize(
            source.store.slots.map { s in (s.name, s.shape, Array(source.store.parameterBuffer[s.range])) }))
        let target = try tinyResNet(classes: 10, head: [6])
        target.initializeParameters(seed: 2)
        let report = try target.loadPretrained(file)
        #expect(report.unexpected == ["fc.bias", "fc.weight"])
        #expect(report.missing.contains("fc.0.weight") && report.missing.contains("fc.4.weight"))
    }
}
