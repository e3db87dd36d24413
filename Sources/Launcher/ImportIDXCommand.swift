import ArgumentParser
import Foundation
import Shards

/// `distrainer import-idx`: converts an IDX images/labels pair (MNIST, Fashion-MNIST, ...) into
/// PNG files plus a JSONL manifest that `train` can read.
struct ImportIDXCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-idx",
        abstract: "Convert IDX images + labels (MNIST family, .gz or raw) into PNGs and a JSONL manifest.",
        discussion: """
            Writes OUT/NAME/<folder>/<index>.png (8-bit gray) and OUT/NAME.jsonl with one line per \
            image: {"id", "image" (relative to OUT), "label" (class name), "label_id"}.

            Example (Fashion-MNIST's training set into data/train.jsonl + data/train/):
              distrainer import-idx --classes fashion-mnist --out data --name train
                --images train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz
            """)

    @Option(help: ArgumentHelp("IDX images file (magic 0x00000803), gzipped or raw.", valueName: "file"))
    var images: String

    @Option(help: ArgumentHelp("IDX labels file (magic 0x00000801), gzipped or raw.", valueName: "file"))
    var labels: String

    @Option(help: ArgumentHelp(
        "Class names in label order: a comma-separated list, a preset (fashion-mnist, mnist), or @FILE with one name per line.",
        valueName: "names"))
    var classes: String

    @Option(help: ArgumentHelp("Output folder (created if needed).", valueName: "dir"))
    var out: String

    @Option(help: ArgumentHelp("Dataset name: the image subfolder and the manifest's base name.", valueName: "name"))
    var name: String = "train"

    @Option(help: ArgumentHelp("Import only the first N images.", valueName: "n"))
    var limit: Int?

    func validate() throws {
        if let limit, limit < 0 { throw ValidationError("--limit must be >= 0") }
        if name.isEmpty || name.contains("/") || name == "." || name == ".." {
            throw ValidationError("--name must be a plain name such as 'train' (got '\(name)')")
        }
        _ = try classNames()
    }

    /// The class names from `--classes`.
    func classNames() throws -> [String] {
        switch classes.lowercased() {
        case "fashion-mnist", "fashion_mnist", "fashionmnist": return IDXImporter.fashionMNISTClasses
        case "mnist": return IDXImporter.mnistClasses
        default: break
        }
        var names: [String]
        if classes.hasPrefix("@") {
            let path = String(classes.dropFirst())
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("--classes: cannot read \(path)")
            }
            names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            names.removeAll { $0.isEmpty }
        } else {
            names = classes.split(separator: ",", omittingEmptySubsequences: false)
                .map { $0.trimmingCharacters(in: .whitespaces) }
            if names.contains(where: \.isEmpty) {
                throw ValidationError("--classes: empty class name in '\(classes)'")
            }
        }
        if names.isEmpty { throw ValidationError("--classes: no class names") }
        if Set(names).count != names.count { throw ValidationError("--classes: duplicate class names") }
        return names
    }

    func run() throws {
        let start = Date()
        let count = try IDXImporter.run(images: images, labels: labels, classes: try classNames(),
                                        outDir: out, name: name, limit: limit)
        let seconds = Date().timeIntervalSince(start)
        let manifest = IDXImporter.manifestPath(outDir: out, name: name)
        print("imported \(count) images in \(String(format: "%.1f", seconds)) s")
        print("manifest: \(manifest)")
    }
}
