import Crypto
import Foundation
import Support

/// Splits a JSONL manifest into train / val (/ test) manifests with no image or group shared
/// between splits, stratified by label, deterministic from the seed.
///
///     var o = SplitOptions(input: "raw.jsonl", outDir: "splits")
///     o.manifest = ManifestOptions(imageField: "image_url", labelField: "latin_name", onBadRecord: .skip)
///     let analysis = try Split.run(o)      // writes splits/train.jsonl, val.jsonl, test.jsonl, …
///
/// Steps, each counted in split_analysis.json:
/// 1. One streaming pass validates every line (`Manifest.scan`); bad lines stop the run or, with
///    `.skip`, are counted per reason and written to rejected.jsonl. The region and licence
///    filters apply here.
/// 2. Dedup: records naming the same image (canonical reference, see
///    `ImageReference.canonicalKey`, or with `dedupContent` the same file bytes) collapse to the
///    first; if their labels disagree, `onLabelConflict` decides.
/// 3. `minPerClass` drops small classes; `maxPerClass` subsamples large ones (seeded).
/// 4. Components: records sharing an image or a group key (union-find over all records that
///    passed the filters, removed duplicates included) are kept together; each component is
///    stratified under its most common label (ties: the first in code-point order).
/// 5. `SplitAssignment` shares each class's components among the splits.
/// 6. A second pass writes each kept line unchanged, except that a relative image path is
///    rewritten relative to the output folder; then classes.json and class_weights.json.
/// 7. The outputs are re-read to count classes, fingerprint them and check for leakage.
///
/// Memory: a few parallel integer arrays per record (about 40 bytes) plus the distinct image
/// references, labels, group keys and ids; the file itself is streamed twice, never held. On
/// the generated 1,000,000-line benchmark (`tools/bench_split.sh`: half the lines duplicate
/// URLs) the peak RSS was 225 MiB, about 236 bytes per input line.
public enum Split {
    public static func run(_ o: SplitOptions) throws -> SplitAnalysis {
        try o.validate()
        let names = o.splitNames
        var files = Files(o)
        try files.prepare()

        // 1. Validate and filter, streaming.
        let rejectedWriter = o.manifest.onBadRecord == .skip ? try AtomicFile.Writer(path: files.rejected) : nil
        var pool = try readInput(o, inputDir: files.inputDir, rejectedWriter: rejectedWriter)

        // 2. Dedup and label conflicts; components.
        var uf = UnionFind(count: pool.count)
        let dedup = try deduplicate(pool, o, &uf)
        var kept = dedup.kept
        for (i, g) in pool.group.enumerated() where g >= 0 {
            if pool.firstOfGroup[Int(g)] < 0 { pool.firstOfGroup[Int(g)] = Int32(i) } else { uf.union(Int(pool.firstOfGroup[Int(g)]), i) }
        }

        // 3. Class-size filters.
        let minFilter = applyMinPerClass(&kept, pool, o)
        let maxFilter = applyMaxPerClass(&kept, pool, o)

        // 4–5. Components and stratified assignment.
        var plan = assign(kept: kept, pool: pool, uf: &uf, o)

        // 6. Write the splits, rejected.jsonl, classes.json; remove our outputs of an earlier run
        // that this one does not write (test.jsonl of a 3-way split, rejected.jsonl).
        try writeOutputs(pool: pool, plan: plan, o, files)
        try rejectedWriter?.commit()
        for stale in files.staleOutputs(writingRejected: rejectedWriter != nil) { unlink(stale) }
        pool.imageKeys = Interner()
        try ClassList(names: plan.classNames).save(to: files.classes)

        // 7. Re-read: counts, fingerprints, leakage; class weights from the training split.
        let check = try verify(files.outputs, names: names, classNames: plan.classNames, outDir: files.outDir, o)
        for (s, out) in check.outputs.enumerated() where out.records != plan.splitCounts[s] {
            throw SplitError.output(path: out.file, reason: "wrote \(plan.splitCounts[s]) records but re-read \(out.records)")
        }
        let trainCounts = check.perClass.map { $0.counts[0] }
        try ClassWeights(classes: plan.classNames, counts: trainCounts, beta: o.beta).save(to: files.classWeights)
        plan.stratification.missingFromTrain = check.perClass.filter { $0.counts[0] == 0 && $0.total > 0 }.map(\.name)

        let analysis = SplitAnalysis(
            input: o.input, inputFingerprint: pool.fingerprint.hex,
            fields: .init(image: o.manifest.imageField, label: o.manifest.labelField, group: o.manifest.groupField),
            seed: o.seed, splits: names, ratios: o.ratios,
            lines: .init(total: pool.lines, blank: pool.blank, valid: pool.valid, rejected: pool.rejectedTotal),
            rejected: .init(policy: o.manifest.onBadRecord.rawValue, total: pool.rejectedTotal, byReason: pool.rejectedByReason,
                            file: rejectedWriter == nil ? nil : Files.rejectedName),
            filters: [pool.regionFilter, pool.licenseFilter, minFilter, maxFilter],
            dedup: dedup.stats, labelConflicts: dedup.conflicts, components: plan.components,
            stratification: plan.stratification, outputs: check.outputs, perClass: check.perClass,
            leakage: check.leakage, classWeights: Files.classWeightsName)
        try analysis.save(to: files.analysis)
        if !check.leakage.ok {
            throw SplitError.leakage("\(check.leakage.imagesInSeveralSplits) images in several splits, "
                + "\(check.leakage.groupsInSeveralSplits) groups in several splits, \(check.leakage.imagesKeptTwice) images kept twice "
                + "(see \(files.analysis))")
        }
        return analysis
    }

    // MARK: Files

    struct Files {
        static let rejectedName = "rejected.jsonl", classesName = "classes.json"
        static let classWeightsName = "class_weights.json", analysisName = "split_analysis.json"
        let input: String
        let requestedOut: String
        let names: [String]
        var inputDir = "", outDir = ""
        /// The input's size and modification time when the run started.
        var inputStamp: [Int] = []

        init(_ o: SplitOptions) { input = o.input; requestedOut = o.outDir; names = o.splitNames }

        var outputs: [String] { names.map { "\(outDir)/\($0).jsonl" } }

        /// Files named like our outputs that this run does not write.
        func staleOutputs(writingRejected: Bool) -> [String] {
            let candidates = (names.count == 2 ? ["\(outDir)/test.jsonl"] : []) + (writingRejected ? [] : [rejected])
            return candidates.filter { FileManager.default.fileExists(atPath: $0) }
        }
        var rejected: String { "\(outDir)/\(Self.rejectedName)" }
        var classes: String { "\(outDir)/\(Self.classesName)" }
        var classWeights: String { "\(outDir)/\(Self.classWeightsName)" }
        var analysis: String { "\(outDir)/\(Self.analysisName)" }

        /// Creates the output folder and resolves both folders to real absolute paths (relative
        /// image paths are rewritten between them); refuses to overwrite the input.
        mutating func prepare() throws {
            let realInput = try Self.realPath(input)
            inputStamp = try Self.stamp(input)
            do {
                try FileManager.default.createDirectory(atPath: requestedOut, withIntermediateDirectories: true)
            } catch {
                throw SplitError.output(path: requestedOut, reason: "cannot create the output folder: \(error.localizedDescription)")
            }
            let inputFolder = (input as NSString).deletingLastPathComponent
            inputDir = try Self.realPath(inputFolder.isEmpty ? "." : inputFolder)
            outDir = try Self.realPath(requestedOut)
            for p in outputs + [rejected, classes, classWeights, analysis] where p == realInput {
                throw SplitError.invalidOption("\(input): the output \(p) would overwrite the input; choose another --out")
            }
        }

        /// Size and modification time of a regular file (the input is read twice, so a pipe
        /// will not do, and a change between the passes must be noticed).
        static func stamp(_ path: String) throws -> [Int] {
            var st = stat()
            guard stat(path, &st) == 0 else {
                throw ManifestError(file: path, line: 0, reason: "cannot open", detail: String(cString: strerror(errno)))
            }
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                throw SplitError.invalidOption("\(path): must be a regular file (split reads it twice)")
            }
            return [Int(st.st_size), Int(st.st_mtim.tv_sec), Int(st.st_mtim.tv_nsec)]
        }

        /// Throws when the input changed since `prepare`.
        func checkInputUnchanged() throws {
            guard try Self.stamp(input) == inputStamp else {
                throw SplitError.output(path: input, reason: "the input changed while it was being split; run again")
            }
        }

        static func realPath(_ path: String) throws -> String {
            guard let p = realpath(path, nil) else {
                throw ManifestError(file: path, line: 0, reason: "cannot open", detail: String(cString: strerror(errno)))
            }
            defer { free(p) }
            return String(cString: p)
        }
    }

    // MARK: 1. Reading

    /// Distinct strings numbered in first-seen order.
    struct Interner {
        var ids: [String: Int32] = [:]
        var names: [String] = []
        mutating func id(_ s: String) -> Int32 {
            if let i = ids[s] { return i }
            let i = Int32(names.count)
            ids[s] = i
            names.append(s)
            return i
        }
    }

    /// The records that passed validation and the region/licence filters, in file order, as
    /// parallel arrays of small integers, plus what reading counted.
    struct Pool {
        var line: [Int32] = []
        var image: [Int32] = []
        var label: [Int32] = []
        var group: [Int32] = []                 // -1: none
        /// For relative image paths, the value's byte range in the line (rewritten on output);
        /// `UInt64.max` otherwise.
        var span: [UInt64] = []
        var imageKeys = Interner(), labels = Interner(), groups = Interner()
        var firstOfGroup: [Int32] = []
        var count: Int { line.count }

        var lines = 0, blank = 0, valid = 0, rejectedTotal = 0
        var rejectedByReason: [String: Int] = [:]
        var fingerprint = ManifestFingerprint()
        var regionFilter = SplitAnalysis.Filter(name: "region", enabled: false, setting: nil, recordsBefore: 0, recordsRemoved: 0,
                                                recordsWithoutField: 0, classesBefore: 0, classesRemoved: 0)
        var licenseFilter = SplitAnalysis.Filter(name: "license", enabled: false, setting: nil, recordsBefore: 0, recordsRemoved: 0,
                                                 recordsWithoutField: 0, classesBefore: 0, classesRemoved: 0)
    }

    static func readInput(_ o: SplitOptions, inputDir: String, rejectedWriter: AtomicFile.Writer?) throws -> Pool {
        var pool = Pool()
        let regions = o.regions.map(Set.init)
        let licenses = o.licenses.map { Set($0.map(Licenses.normalize)) }
        pool.regionFilter.enabled = regions != nil
        pool.regionFilter.setting = o.regions?.joined(separator: ",")
        pool.licenseFilter.enabled = licenses != nil
        pool.licenseFilter.setting = o.licenses?.joined(separator: ",")
        // Per label: valid records, after the region filter, after the licence filter.
        var perLabel: [[Int]] = [[], [], []]
        var out: [UInt8] = []

        let totals = try Manifest.scan(path: o.input, options: o.manifest, keepRaw: false) { number, bytes, outcome in
            let parsed: Manifest.ParsedRecord
            switch outcome {
            case let .bad(error):
                if o.manifest.onBadRecord == .error { throw error }
                pool.rejectedTotal += 1
                pool.rejectedByReason[error.reason, default: 0] += 1
                out.removeAll(keepingCapacity: true)
                out += Array(#"{"line": \#(number), "reason": "#.utf8)
                JSONWriter.appendString(error.reason, to: &out)
                out += Array(#", "detail": "#.utf8)
                if let d = error.detail { JSONWriter.appendString(d, to: &out) } else { out += Array("null".utf8) }
                out += Array(#", "text": "#.utf8)
                JSONWriter.appendString(String(decoding: bytes, as: UTF8.self), to: &out)
                out += Array("}\n".utf8)
                try rejectedWriter?.append(out)
                return
            case let .record(p): parsed = p
            }
            let r = parsed.record
            pool.valid += 1
            pool.fingerprint.add(image: r.image, label: r.label, group: r.group)
            let label = pool.labels.id(r.label)
            if Int(label) == perLabel[0].count { for k in 0..<3 { perLabel[k].append(0) } }
            perLabel[0][Int(label)] += 1

            if let regions {
                guard let region = r.metadata.region else { pool.regionFilter.recordsWithoutField += 1; return }
                guard regions.contains(region) else { return }
            }
            perLabel[1][Int(label)] += 1
            if let licenses {
                guard let license = r.metadata.license else { pool.licenseFilter.recordsWithoutField += 1; return }
                guard licenses.contains(Licenses.normalize(license)) else { return }
            }
            perLabel[2][Int(label)] += 1

            pool.line.append(Int32(number))
            pool.image.append(pool.imageKeys.id(parsed.reference.canonicalKey(baseDir: inputDir)))
            pool.label.append(label)
            if let g = r.group {
                let id = pool.groups.id(g)
                if Int(id) == pool.firstOfGroup.count { pool.firstOfGroup.append(-1) }
                pool.group.append(id)
            } else {
                pool.group.append(-1)
            }
            if case let .path(p) = parsed.reference, !p.hasPrefix("/") {
                pool.span.append(UInt64(parsed.imageSpan.lowerBound) << 32 | UInt64(parsed.imageSpan.upperBound))
            } else {
                pool.span.append(UInt64.max)
            }
        }
        pool.lines = totals.lines
        pool.blank = totals.blank
        func fill(_ f: inout SplitAnalysis.Filter, before: [Int], after: [Int]) {
            f.recordsBefore = before.reduce(0, +)
            f.recordsRemoved = f.recordsBefore - after.reduce(0, +)
            f.classesBefore = before.filter { $0 > 0 }.count
            f.classesRemoved = f.classesBefore - after.filter { $0 > 0 }.count
        }
        fill(&pool.regionFilter, before: perLabel[0], after: perLabel[1])
        fill(&pool.licenseFilter, before: perLabel[1], after: perLabel[2])
        return pool
    }

    // MARK: 2. Dedup

    struct DedupResult {
        var kept: [Bool]
        var stats: SplitAnalysis.Dedup
        var conflicts: SplitAnalysis.LabelConflicts
    }

    /// Unions records naming the same image (reference, or content with `dedupContent`) in
    /// `uf`; keeps the first of each image, or none when labels disagree under `.drop`.
    static func deduplicate(_ pool: Pool, _ o: SplitOptions, _ uf: inout UnionFind) throws -> DedupResult {
        let n = pool.count
        var firstOfImage = [Int32](repeating: -1, count: pool.imageKeys.names.count)
        for i in 0..<n {
            let k = Int(pool.image[i])
            if firstOfImage[k] < 0 { firstOfImage[k] = Int32(i) } else { uf.union(Int(firstOfImage[k]), i) }
        }
        var contentUnreadable = 0
        if o.dedupContent {
            var firstOfDigest: [SHA256Digest: Int32] = [:]
            for (k, key) in pool.imageKeys.names.enumerated() where firstOfImage[k] >= 0 && key.hasPrefix("/") {
                guard let bytes = try? ImageFile.readBytes(path: key) else { contentUnreadable += 1; continue }
                let digest = SHA256.hash(data: bytes)
                if let first = firstOfDigest[digest] { uf.union(Int(first), Int(firstOfImage[k])) } else { firstOfDigest[digest] = firstOfImage[k] }
            }
        }

        // The first record of each image cluster, and whether any record disagrees with its label.
        var root = [Int32](repeating: 0, count: n)
        var firstOfRoot = [Int32](repeating: -1, count: n)
        var conflicted = [Bool](repeating: false, count: n)
        var conflictRecords = 0, conflictImages = 0, contentDuplicates = 0
        var examples: [Int: Int] = [:]                     // root → index in `exampleList`
        var exampleList: [SplitAnalysis.ConflictExample] = []
        for i in 0..<n {
            let r = uf.find(i)
            root[i] = Int32(r)
            let first = Int(firstOfRoot[r])
            if first < 0 { firstOfRoot[r] = Int32(i); continue }
            if pool.image[i] != pool.image[first] { contentDuplicates += 1 }
            if pool.label[i] != pool.label[first] && !conflicted[r] {
                if o.onLabelConflict == .error {
                    throw ManifestError(file: o.input, line: Int(pool.line[i]), reason: "label conflict",
                                        detail: "\(pool.imageKeys.names[Int(pool.image[i])]) is labelled "
                                            + "\(JSONWriter.string(pool.labels.names[Int(pool.label[i])])) here and "
                                            + "\(JSONWriter.string(pool.labels.names[Int(pool.label[first])])) on line \(pool.line[first])")
                }
                conflicted[r] = true
                conflictImages += 1
                if exampleList.count < 20 {
                    examples[r] = exampleList.count
                    exampleList.append(.init(image: pool.imageKeys.names[Int(pool.image[first])], labels: [], lines: []))
                }
            }
        }
        var kept = [Bool](repeating: false, count: n)
        var duplicateRemoved = 0, conflictRemoved = 0, duplicated = Set<Int32>()
        for i in 0..<n {
            let r = Int(root[i])
            let isFirst = Int(firstOfRoot[r]) == i
            if conflicted[r] {
                conflictRecords += 1
                if let e = examples[r] {
                    exampleList[e].lines.append(Int(pool.line[i]))
                    let label = pool.labels.names[Int(pool.label[i])]
                    if !exampleList[e].labels.contains(label) { exampleList[e].labels.append(label) }
                }
                kept[i] = isFirst && o.onLabelConflict == .keepFirst
                if !kept[i] { conflictRemoved += 1 }
            } else {
                kept[i] = isFirst
                if !isFirst { duplicateRemoved += 1; duplicated.insert(Int32(r)) }
            }
        }
        let after = kept.lazy.filter { $0 }.count
        return DedupResult(
            kept: kept,
            stats: .init(key: o.dedupContent ? "image reference + content SHA-256" : "image reference", recordsBefore: n,
                         duplicatedImages: duplicated.count, duplicateRecordsRemoved: duplicateRemoved,
                         contentDuplicates: contentDuplicates, contentUnreadable: contentUnreadable, recordsAfter: after),
            conflicts: .init(policy: o.onLabelConflict.rawValue, images: conflictImages, records: conflictRecords,
                             recordsRemoved: conflictRemoved, examples: exampleList))
    }

    // MARK: 3. Class-size filters

    static func keptPerLabel(_ kept: [Bool], _ pool: Pool) -> [Int] {
        var counts = [Int](repeating: 0, count: pool.labels.names.count)
        for i in 0..<pool.count where kept[i] { counts[Int(pool.label[i])] += 1 }
        return counts
    }

    static func applyMinPerClass(_ kept: inout [Bool], _ pool: Pool, _ o: SplitOptions) -> SplitAnalysis.Filter {
        let before = keptPerLabel(kept, pool)
        var f = SplitAnalysis.Filter(name: "min_per_class", enabled: o.minPerClass != nil, setting: o.minPerClass.map { "\($0)" },
                                     recordsBefore: before.reduce(0, +), recordsRemoved: 0, recordsWithoutField: 0,
                                     classesBefore: before.filter { $0 > 0 }.count, classesRemoved: 0)
        guard let minimum = o.minPerClass else { return f }
        for i in 0..<pool.count where kept[i] && before[Int(pool.label[i])] < minimum {
            kept[i] = false
            f.recordsRemoved += 1
        }
        f.classesRemoved = before.filter { $0 > 0 && $0 < minimum }.count
        return f
    }

    /// Keeps `maxPerClass` records of each larger class: the first of a seeded permutation of
    /// the class's records (stream derived from the label, so other classes do not affect it).
    static func applyMaxPerClass(_ kept: inout [Bool], _ pool: Pool, _ o: SplitOptions) -> SplitAnalysis.Filter {
        let before = keptPerLabel(kept, pool)
        var f = SplitAnalysis.Filter(name: "max_per_class", enabled: o.maxPerClass != nil, setting: o.maxPerClass.map { "\($0)" },
                                     recordsBefore: before.reduce(0, +), recordsRemoved: 0, recordsWithoutField: 0,
                                     classesBefore: before.filter { $0 > 0 }.count, classesRemoved: 0)
        guard let maximum = o.maxPerClass else { return f }
        var members: [Int32: [Int32]] = [:]
        for i in 0..<pool.count where kept[i] && before[Int(pool.label[i])] > maximum {
            members[pool.label[i], default: []].append(Int32(i))
        }
        for (label, records) in members {
            var rng = RandomSource(seed: o.seed, stream: stream(for: pool.labels.names[Int(label)], purpose: 2))
            for p in rng.permutation(records.count)[maximum...] {
                kept[Int(records[p])] = false
                f.recordsRemoved += 1
            }
        }
        return f
    }

    /// A random stream id per (label, purpose): FNV-1a of the label's UTF-8.
    static func stream(for label: String, purpose: UInt64) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in label.utf8 { h ^= UInt64(b); h = h &* 0x0000_0100_0000_01B3 }
        return h ^ (purpose &* 0x9E37_79B9_7F4A_7C15)
    }

    // MARK: 4–5. Components and assignment

    struct Plan {
        /// Split index per pool record; 255 when not kept.
        var split: [UInt8]
        var splitCounts: [Int]
        var classNames: [String]
        var components: SplitAnalysis.Components
        var stratification: SplitAnalysis.Stratification
    }

    static let ruleText = """
        A class with at least as many components as splits gets largest-remainder targets (each split \
        floor(n*ratio), the rest to the largest fractional parts, ties in seeded order); its components go, \
        largest first, to the split furthest below its target. A class with fewer components than splits \
        (too small to stratify) sends them, largest first, to train, then val, then test. A component \
        (records sharing an image or group key) counts toward its most common label.
        """

    static func assign(kept: [Bool], pool: Pool, uf: inout UnionFind, _ o: SplitOptions) -> Plan {
        let n = pool.count, names = o.splitNames
        // Components of the kept records.
        var componentOfRoot = [Int32](repeating: -1, count: n)
        var component = [Int32](repeating: -1, count: n)
        var sizes: [Int] = [], firstLabel: [Int32] = [], mixed: [Bool] = []
        for i in 0..<n where kept[i] {
            let r = uf.find(i)
            if componentOfRoot[r] < 0 {
                componentOfRoot[r] = Int32(sizes.count)
                sizes.append(0); firstLabel.append(pool.label[i]); mixed.append(false)
            }
            let c = Int(componentOfRoot[r])
            component[i] = Int32(c)
            sizes[c] += 1
            if pool.label[i] != firstLabel[c] { mixed[c] = true }
        }
        // The most common label of mixed components (ties: first in code-point order).
        var histograms: [Int: [Int32: Int]] = [:]
        for i in 0..<n where kept[i] && mixed[Int(component[i])] { histograms[Int(component[i]), default: [:]][pool.label[i], default: 0] += 1 }
        var primary = firstLabel
        for (c, h) in histograms {
            primary[c] = h.max { a, b in
                a.value != b.value ? a.value < b.value
                    : pool.labels.names[Int(b.key)].unicodeScalars.lexicographicallyPrecedes(pool.labels.names[Int(a.key)].unicodeScalars)
            }?.key ?? primary[c]
        }

        // Classes: every label a kept record carries, sorted (classes.json order).
        var hasRecords = [Bool](repeating: false, count: pool.labels.names.count)
        for i in 0..<n where kept[i] { hasRecords[Int(pool.label[i])] = true }
        let classes = ClassList(labels: pool.labels.names.indices.filter { hasRecords[$0] }.map { pool.labels.names[$0] })
        var componentsOfClass = [[Int]](repeating: [], count: classes.count)
        for c in sizes.indices {
            if let k = classes.index(of: pool.labels.names[Int(primary[c])]) { componentsOfClass[k].append(c) }
        }

        var splitOfComponent = [UInt8](repeating: 0, count: sizes.count)
        var tiny: [SplitAnalysis.TinyClass] = []
        for (k, comps) in componentsOfClass.enumerated() where !comps.isEmpty {
            var rng = RandomSource(seed: o.seed, stream: stream(for: classes.names[k], purpose: 1))
            let result = SplitAssignment.assign(sizes: comps.map { sizes[$0] }, weights: o.weights, rng: &rng)
            for (j, c) in comps.enumerated() { splitOfComponent[c] = UInt8(result[j]) }
            if comps.count < names.count {
                tiny.append(.init(name: classes.names[k], records: comps.reduce(0) { $0 + sizes[$1] }, components: comps.count,
                                  assigned: result.sorted().map { names[$0] }))
            }
        }
        var split = [UInt8](repeating: 255, count: n)
        var counts = [Int](repeating: 0, count: names.count)
        for i in 0..<n where kept[i] {
            let s = splitOfComponent[Int(component[i])]
            split[i] = s
            counts[Int(s)] += 1
        }
        return Plan(split: split, splitCounts: counts, classNames: classes.names,
                    components: .init(count: sizes.count, largest: sizes.max() ?? 0, multiRecord: sizes.filter { $0 > 1 }.count,
                                      multiLabel: mixed.filter { $0 }.count),
                    stratification: .init(rule: ruleText, classes: classes.count, tooSmallToStratify: tiny, missingFromTrain: []))
    }

    // MARK: 6. Writing

    /// Streams the input again and writes each kept line to its split, rewriting relative image
    /// paths so they resolve from the output folder.
    static func writeOutputs(pool: Pool, plan: Plan, _ o: SplitOptions, _ files: Files) throws {
        let writers = try files.outputs.map { try AtomicFile.Writer(path: $0) }
        let lines = pool.line, spans = pool.span, split = plan.split, inputDir = files.inputDir, outDir = files.outDir
        var cursor = 0
        var out: [UInt8] = []
        try Manifest.forEachLine(path: o.input) { number, bytes in
            while cursor < lines.count && Int(lines[cursor]) < number { cursor += 1 }
            guard cursor < lines.count, Int(lines[cursor]) == number, split[cursor] != 255 else { return }
            let w = writers[Int(split[cursor])]
            let span = spans[cursor]
            if span == UInt64.max {
                try w.append(bytes)
            } else {
                let lo = Int(span >> 32), hi = Int(span & 0xFFFF_FFFF)
                guard hi <= bytes.count, lo < hi,
                      case let .string(image)? = try? JSONParser.parse(UnsafeBufferPointer(rebasing: bytes[lo..<hi])) else {
                    throw SplitError.output(path: o.input, reason: "line \(number) changed while splitting")
                }
                let target = ImageReference.normalize(inputDir + "/" + image)
                out.removeAll(keepingCapacity: true)
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[..<lo]))
                JSONWriter.appendString(ImageReference.relative(target, from: outDir), to: &out)
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[hi...]))
                try w.append(out)
            }
            try w.append([0x0A])
        }
        try files.checkInputUnchanged()                   // before anything is committed
        for w in writers { try w.commit() }
    }

    // MARK: 7. Verification

    struct Check {
        var outputs: [SplitAnalysis.Output]
        var perClass: [SplitAnalysis.ClassCounts]
        var leakage: SplitAnalysis.Leakage
    }

    /// Re-reads the written splits as the trainer would: per-class counts, fingerprints, and no
    /// image (canonical reference) or group key in two splits or twice.
    static func verify(_ paths: [String], names: [String], classNames: [String], outDir: String, _ o: SplitOptions) throws -> Check {
        var options = o.manifest
        options.onBadRecord = .error
        var splitOfImage: [String: UInt8] = [:], splitOfGroup: [String: UInt8] = [:]
        var leakingImages = Set<String>(), leakingGroups = Set<String>()
        var twice = 0, checked = 0
        let classes = ClassList(names: classNames)
        var perClass = classNames.map { SplitAnalysis.ClassCounts(name: $0, total: 0, counts: Array(repeating: 0, count: names.count)) }
        var outputs: [SplitAnalysis.Output] = []
        for (s, path) in paths.enumerated() {
            var fingerprint = ManifestFingerprint()
            var labels = Set<String>()
            try Manifest.scan(path: path, options: options, keepRaw: false) { _, _, outcome in
                guard case let .record(p) = outcome else {
                    if case let .bad(e) = outcome { throw e }
                    return
                }
                let r = p.record
                checked += 1
                fingerprint.add(image: r.image, label: r.label, group: r.group)
                labels.insert(r.label)
                if let k = classes.index(of: r.label) { perClass[k].counts[s] += 1; perClass[k].total += 1 }
                let key = p.reference.canonicalKey(baseDir: outDir)
                if let prior = splitOfImage.updateValue(UInt8(s), forKey: key) {
                    if prior == UInt8(s) { twice += 1 } else { leakingImages.insert(key) }
                }
                if let g = r.group, let prior = splitOfGroup.updateValue(UInt8(s), forKey: g), prior != UInt8(s) {
                    leakingGroups.insert(g)
                }
            }
            outputs.append(.init(name: names[s], file: (path as NSString).lastPathComponent, records: fingerprint.count,
                                 classes: labels.count, fingerprint: fingerprint.hex))
        }
        let ok = leakingImages.isEmpty && leakingGroups.isEmpty && twice == 0
        return Check(outputs: outputs, perClass: perClass,
                     leakage: .init(ok: ok, method: "re-read the written splits; compared canonical image references and group keys",
                                    recordsChecked: checked, imagesInSeveralSplits: leakingImages.count,
                                    groupsInSeveralSplits: leakingGroups.count, imagesKeptTwice: twice))
    }
}
