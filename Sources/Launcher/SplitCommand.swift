import ArgumentParser
import Foundation
import Shards

/// `distrainer split`: validates a raw JSONL export, removes duplicates, applies filters and
/// writes leak-free, label-stratified train / val / test manifests with an analysis.
struct SplitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split",
        abstract: "Validate, deduplicate and filter a JSONL manifest, then split it into train/val/test without leakage.",
        discussion: """
            Writes OUT/train.jsonl, val.jsonl, test.jsonl (the input's lines, relative image paths \
            rewritten to resolve from OUT), classes.json, class_weights.json, split_analysis.json and, \
            with --on-bad-record skip, rejected.jsonl.

            Records naming the same image (same path after resolving against the manifest's folder, \
            same URL, or with --dedup-content the same file bytes) are kept once; records sharing an \
            image or a --group-field value always land in the same split. Each class is split by \
            largest remainder (within ±1 record of its ratio when records are independent); a class \
            with fewer components than splits goes to train, then val, then test.

            Validation (first failure per line): not JSON / not an object; image field missing, empty, \
            not a string, an invalid URL or a scheme other than file/http/https; label missing, empty \
            or not a string/integer; group field empty or not a string/integer; id not a string/integer \
            or a duplicate; lat/lon not a number, not finite or outside ±90/±180; source/region/license \
            not a string.

            --production-only keeps these licences (case, spaces and versions ignored, Creative \
            Commons URLs understood): \(Licenses.permissive.joined(separator: ", ")). NC and ND \
            variants and records without a licence are dropped.

            Example:
              distrainer split --input raw.jsonl --out splits --ratios 0.8,0.1,0.1 --seed 1
                --image-field image_url --label-field latin_name --on-bad-record skip
            """)

    @Option(help: ArgumentHelp("The JSONL manifest to split.", valueName: "file"))
    var input: String

    @Option(help: ArgumentHelp("Output folder (created if needed).", valueName: "dir"))
    var out: String

    @Option(help: ArgumentHelp("Shares of train,val[,test]: 2 or 3 positive numbers summing to 1.", valueName: "list"))
    var ratios: String = "0.8,0.1,0.1"

    @Option(help: "Seed for tie-breaking and subsampling (same seed, same outputs).")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Field holding the image path or URL.", valueName: "name"))
    var imageField: String = "image"

    @Option(help: ArgumentHelp("Field holding the label.", valueName: "name"))
    var labelField: String = "label"

    @Option(help: ArgumentHelp("Field whose records must stay in one split (e.g. an observation id).", valueName: "name"))
    var groupField: String?

    @Option(help: ArgumentHelp("error: stop at the first bad line (file:line: reason); skip: count it and list it in rejected.jsonl.",
                               valueName: "error|skip"))
    var onBadRecord: String = "error"

    @Option(help: ArgumentHelp("Same image, different labels: keep the first record, drop them all, or stop.",
                               valueName: "keep-first|drop|error"))
    var onLabelConflict: String = "keep-first"

    @Flag(help: "Also deduplicate local files with identical content (SHA-256).")
    var dedupContent = false

    @Option(help: ArgumentHelp("Keep only records whose \"region\" is one of these (comma-separated, exact).", valueName: "list"))
    var region: String?

    @Option(help: ArgumentHelp("Keep only records whose \"license\" is one of these (comma-separated, e.g. cc0,cc-by).", valueName: "list"))
    var licenseAllow: String?

    @Flag(help: "Keep only permissively licensed records (see the list below).")
    var productionOnly = false

    @Option(help: ArgumentHelp("Drop classes with fewer unique images than this.", valueName: "n"))
    var minPerClass: Int?

    @Option(help: ArgumentHelp("Subsample classes to at most this many images (seeded).", valueName: "n"))
    var maxPerClass: Int?

    @Option(help: ArgumentHelp("β of the effective-number class weights.", valueName: "beta"))
    var beta: Double = 0.999

    func validate() throws {
        _ = try options()
    }

    func options() throws -> SplitOptions {
        var o = SplitOptions(input: input, outDir: out)
        o.ratios = try ratios.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let v = Double($0.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--ratios: '\($0)' is not a number")
            }
            return v
        }
        o.seed = seed
        guard let policy = BadRecordPolicy(rawValue: onBadRecord) else {
            throw ValidationError("--on-bad-record must be error or skip, got '\(onBadRecord)'")
        }
        o.manifest = ManifestOptions(imageField: imageField, labelField: labelField, groupField: groupField, onBadRecord: policy)
        guard let conflict = LabelConflictPolicy(rawValue: onLabelConflict) else {
            throw ValidationError("--on-label-conflict must be keep-first, drop or error, got '\(onLabelConflict)'")
        }
        o.onLabelConflict = conflict
        o.dedupContent = dedupContent
        o.regions = try region.map { try list($0, "--region") }
        if productionOnly && licenseAllow != nil {
            throw ValidationError("use either --production-only or --license-allow, not both")
        }
        o.licenses = productionOnly ? Licenses.permissive : try licenseAllow.map { try list($0, "--license-allow") }
        o.minPerClass = minPerClass
        o.maxPerClass = maxPerClass
        o.beta = beta
        do { try o.validate() } catch let e as SplitError { throw ValidationError(e.description) }
        return o
    }

    func list(_ text: String, _ name: String) throws -> [String] {
        let items = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if items.isEmpty { throw ValidationError("\(name) needs at least one value") }
        return items
    }

    func run() throws {
        let start = Date()
        let a = try Split.run(try options())
        let seconds = Date().timeIntervalSince(start)
        print("read \(a.lines.total) lines: \(a.lines.valid) valid records, \(a.lines.rejected) rejected, \(a.lines.blank) blank")
        for (reason, n) in a.rejected.byReason.sorted(by: { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }) {
            print("  rejected \(n): \(reason)")
        }
        if let f = a.rejected.file, a.rejected.total > 0 { print("  rejected lines: \(out)/\(f)") }
        for f in a.filters where f.enabled {
            print("filter \(f.name) (\(f.setting ?? "")): removed \(f.recordsRemoved) records, \(f.classesRemoved) classes")
        }
        print("dedup: \(a.dedup.duplicateRecordsRemoved) duplicate records removed (\(a.dedup.duplicatedImages) images)"
              + (a.dedup.contentDuplicates > 0 ? ", \(a.dedup.contentDuplicates) by content" : ""))
        if a.labelConflicts.images > 0 {
            print("label conflicts: \(a.labelConflicts.images) images in \(a.labelConflicts.records) records, "
                  + "\(a.labelConflicts.recordsRemoved) removed (\(a.labelConflicts.policy))")
        }
        print("\(a.stratification.classes) classes, \(a.components.count) components (largest \(a.components.largest)), "
              + "\(a.stratification.tooSmallToStratify.count) classes too small to stratify")
        for o in a.outputs { print("  \(o.name): \(o.records) records, \(o.classes) classes  \(out)/\(o.file)") }
        print("leakage check: \(a.leakage.ok ? "ok" : "FAILED") (\(a.leakage.recordsChecked) records re-read)")
        print("input fingerprint: \(a.inputFingerprint)")
        print("analysis: \(out)/split_analysis.json (\(String(format: "%.1f", seconds)) s)")
    }
}
