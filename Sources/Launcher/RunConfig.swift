import ArgumentParser
import Foundation
import Support
import Yams

/// `--config run.yaml` and `--preset NAME` for `train` and `cv`: a YAML mapping of option names
/// to values, translated into the command's own `--option value` arguments, so every option
/// of the command is a key and is checked exactly as on the command line.
///
///     # run.yaml                          # distrainer train --config run.yaml --lr 0.01
///     train: data/train.jsonl             # keys: option names, with - or _ (batch_size)
///     out: runs/a                         # flags: true (set) or false (not set)
///     batch-size: 256                     # lists: [32, 64] → "32,64"
///     widths: [32, 64, 128]               # null or an empty value: the default
///     nesterov: true
///
/// Precedence, lowest first: the option defaults, the preset (`--preset`, or a `preset:` key),
/// the config file, the command line (an option from a later source replaces the earlier one;
/// flags can only be turned on). Relative paths are relative to the working directory, as on
/// the command line. Unknown keys, nested mappings, unknown presets and values
/// the option rejects are errors naming the file, line and key. The resolved configuration
/// (every option's final value) is saved as RUN_DIR/config.yaml and loads back as a config.
enum RunConfig {
    /// Options each preset sets (before the config file and the command line).
    static let presets: [String: [String]] = [
        "default": [],
        "fast-dev": ["--epochs", "2", "--max-samples", "512"],
    ]

    /// Subcommands that take `--config` and `--preset`.
    static let commands: [String: ParsableCommand.Type] = ["train": TrainCommand.self, "cv": CVCommand.self]

    /// Where an argument came from, for error messages.
    struct Origin: Equatable {
        var file: String
        var line: Int
        var key: String
        var text: String { line > 0 ? "\(file):\(line): key \"\(key)\"" : "\(file): key \"\(key)\"" }
    }

    /// A problem with the config file or preset.
    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    /// The arguments to parse, and which options came from the config file or preset (and
    /// were not given again on the command line).
    struct Expansion {
        var arguments: [String]
        var origins: [String: Origin] = [:]
    }

    /// `arguments` (without the program name) with `--config FILE` and `--preset NAME`
    /// replaced by the options they stand for; unchanged for other subcommands.
    static func expand(_ arguments: [String]) throws -> Expansion {
        guard let sub = arguments.first, let command = commands[sub] else { return Expansion(arguments: arguments) }
        var rest: [String] = [], configFile: String?, preset: String?
        var i = 1
        while i < arguments.count {
            let a = arguments[i]
            if a == "--" { rest += arguments[i...]; break }
            if let (name, value, used) = Self.option(a, next: i + 1 < arguments.count ? arguments[i + 1] : nil, names: ["config", "preset"]) {
                guard let value else { throw Problem(description: "--\(name) needs a value") }
                if name == "config" { configFile = value } else { preset = value }
                i += used
                continue
            }
            rest.append(a)
            i += 1
        }
        if configFile == nil && preset == nil { return Expansion(arguments: arguments) }

        let options = Self.options(of: command)
        var out = Expansion(arguments: [sub])
        var fileArgs: [(flag: String, tokens: [String], origin: Origin)] = []
        if let configFile {
            let (entries, filePreset) = try read(path: configFile, options: options)
            fileArgs = entries
            if preset == nil { preset = filePreset }
        }
        // Later sources replace earlier ones option by option (so no option is given twice).
        var given = Set<String>()
        for a in rest where a.hasPrefix("--") { given.insert(String(a.dropFirst(2).prefix { $0 != "=" })) }
        for e in fileArgs where !given.contains(e.flag) {
            out.origins[e.flag] = e.origin
        }
        if let preset {
            guard let args = presets[preset] else {
                throw Problem(description: "unknown preset \"\(preset)\" (known: \(presets.keys.sorted().joined(separator: ", ")))")
            }
            var k = 0
            while k < args.count {
                let flag = String(args[k].dropFirst(2))
                let n = k + 1 < args.count && !args[k + 1].hasPrefix("--") ? 2 : 1
                if !given.contains(flag) && !fileArgs.contains(where: { $0.flag == flag }) {
                    out.arguments += args[k..<(k + n)]
                    out.origins[flag] = Origin(file: "preset \(preset)", line: 0, key: flag)
                }
                k += n
            }
        }
        for e in fileArgs where !given.contains(e.flag) { out.arguments += e.tokens }
        out.arguments += rest
        return out
    }

    /// `--name value`, `--name=value` for one of `names`: (name, value, arguments used).
    private static func option(_ a: String, next: String?, names: Set<String>) -> (String, String?, Int)? {
        guard a.hasPrefix("--") else { return nil }
        let body = a.dropFirst(2)
        if let eq = body.firstIndex(of: "=") {
            let name = String(body[..<eq])
            return names.contains(name) ? (name, String(body[body.index(after: eq)...]), 1) : nil
        }
        let name = String(body)
        return names.contains(name) ? (name, next, 2) : nil
    }

    /// The long option names of `command` (from its full help), each with whether it takes a
    /// value (`--lr <lr>`) or is a flag (`--nesterov`).
    static func options(of command: ParsableCommand.Type) -> [String: Bool] {
        let help = Distrainer.helpMessage(for: command, includeHidden: true, columns: 100_000)
        var names: [String: Bool] = [:]
        for line in help.split(separator: "\n") {
            let t = line.drop { $0 == " " }
            guard t.hasPrefix("-") else { continue }
            // "--lr <lr>   Learning rate." / "-h, --help   Show help." / "--foo/--no-foo   …"
            var spec = String(t)
            if let gap = spec.range(of: "  ") { spec = String(spec[..<gap.lowerBound]) }
            let takesValue = spec.contains("<")
            for part in spec.split(whereSeparator: { $0 == " " || $0 == "/" || $0 == "," }) where part.hasPrefix("--") {
                names[String(part.dropFirst(2))] = takesValue
            }
        }
        names["config"] = nil; names["preset"] = nil; names["help"] = nil
        return names
    }

    /// Reads a config file: its options as arguments (in file order) and its `preset`, if any.
    static func read(path: String, options: [String: Bool]) throws -> ([(flag: String, tokens: [String], origin: Origin)], String?) {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw Problem(description: "\(path): cannot read the config file: \((error as NSError).localizedDescription)")
        }
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw Problem(description: "\(path): invalid YAML: \(error)")
        }
        guard let root else { return ([], nil) }   // an empty file
        guard case let .mapping(mapping) = root else {
            throw Problem(description: "\(path):\(root.mark?.line ?? 1): expected a mapping of option names to values")
        }
        var out: [(flag: String, tokens: [String], origin: Origin)] = []
        var seen: [String: Int] = [:]
        var preset: String?
        for (keyNode, value) in mapping {
            let line = keyNode.mark?.line ?? 0
            guard case let .scalar(k) = keyNode else { throw Problem(description: "\(path):\(line): a key must be a name") }
            let key = k.string
            let flag = key.replacingOccurrences(of: "_", with: "-")
            let origin = Origin(file: path, line: line, key: key)
            func bad(_ why: String) -> Problem { Problem(description: "\(origin.text): \(why)") }
            if let first = seen[flag] { throw bad("given twice (first on line \(first))") }
            seen[flag] = line
            if flag == "config" { throw bad("a config file cannot name another config file") }
            if flag == "preset" {
                guard case let .scalar(s) = value, value.tag.description != Tag.Name.null.rawValue else { throw bad("expected a preset name") }
                preset = s.string
                continue
            }
            guard let takesValue = options[flag] else {
                let near = options.keys.filter { $0.hasPrefix(String(flag.prefix(3))) }.sorted().prefix(5)
                throw bad("unknown key" + (near.isEmpty ? "" : " (did you mean one of: \(near.joined(separator: ", "))?)"))
            }
            switch value {
            case let .scalar(s):
                let tag = Tag.Name(rawValue: value.tag.description)
                if tag == .null { continue }   // the default
                if tag == .bool, !takesValue {
                    // false: not set (and not set by a preset either).
                    out.append((flag, value.bool == true ? ["--\(flag)"] : [], origin))
                    continue
                }
                if !takesValue { throw bad("\"\(flag)\" is a flag: expected true or false, got \"\(s.string)\"") }
                out.append((flag, ["--\(flag)", s.string], origin))
            case let .sequence(items):
                guard takesValue else { throw bad("\"\(flag)\" is a flag: expected true or false, got a list") }
                var parts: [String] = []
                for item in items {
                    guard case let .scalar(s) = item else { throw bad("expected a list of values") }
                    parts.append(s.string)
                }
                out.append((flag, ["--\(flag)", parts.joined(separator: ",")], origin))
            case .mapping:
                throw bad("expected a value, a list, or true/false, not a mapping")
            }
        }
        return (out, preset)
    }

    /// The message for `error` (from parsing or running the expanded arguments) naming the
    /// config key or preset an offending option came from, or nil when no such option is named.
    static func explain(_ error: Error, origins: [String: Origin]) -> String? {
        if origins.isEmpty { return nil }
        let message = Distrainer.message(for: error)
        var i = message.startIndex
        while let r = message.range(of: "--", range: i..<message.endIndex) {
            let name = String(message[r.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "-" })
            if let origin = origins[name] {
                if message.hasPrefix("Unknown option") { return "\(origin.text): unknown key" }
                return "\(origin.text): \(message)"
            }
            i = r.upperBound
        }
        return nil
    }

    // MARK: The resolved configuration

    /// Every option of a parsed command with its final value, as YAML (`key: value` in
    /// declaration order; options without a value left out). Loads back with `--config`.
    static func resolvedYAML(of command: ParsableCommand, valid: [String: Bool]) throws -> String {
        var pairs: [(Node, Node)] = []
        func collect(_ value: Any) {
            for child in Mirror(reflecting: value).children {
                guard let label = child.label else { continue }
                let name = kebab(label.hasPrefix("_") ? String(label.dropFirst()) : label)
                if let group = child.value as? AnyOptionGroup { collect(group.groupValue); continue }
                guard let wrapped = child.value as? AnyArgumentValue, valid[name] != nil, name != "config", name != "preset" else { continue }
                guard let v = unwrap(wrapped.argumentValue) else { continue }
                pairs.append((Node(name), Node(describe(v))))
            }
        }
        collect(command)
        return try Yams.serialize(node: Node(pairs))
    }

    /// "batchSize" → "batch-size", "maxRequestsPerSec" → "max-requests-per-sec", "tileUrl" → "tile-url".
    static func kebab(_ name: String) -> String {
        var out = ""
        for c in name {
            if c.isUppercase { if !out.isEmpty { out.append("-") }; out += c.lowercased() } else { out.append(c) }
        }
        return out
    }

    private static func unwrap(_ v: Any) -> Any? {
        let m = Mirror(reflecting: v)
        guard m.displayStyle == .optional else { return v }
        return m.children.first.flatMap { unwrap($0.value) }
    }

    private static func describe(_ v: Any) -> String {
        if let list = v as? [Any] { return list.map { "\($0)" }.joined(separator: ",") }
        return "\(v)"
    }

    /// Writes the resolved configuration to `dir`/config.yaml (atomically; creates `dir`).
    static func save(_ yaml: String, runDirectory dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try AtomicFile.write(Data(yaml.utf8), to: (dir as NSString).appendingPathComponent("config.yaml"))
    }
}

/// A parsed `@Option`/`@Flag`/`@Argument` value seen through `Mirror` (for the resolved config).
protocol AnyArgumentValue { var argumentValue: Any { get } }
extension Option: AnyArgumentValue { var argumentValue: Any { wrappedValue } }
extension Flag: AnyArgumentValue { var argumentValue: Any { wrappedValue } }
/// A parsed `@OptionGroup`, whose options are collected too.
protocol AnyOptionGroup { var groupValue: Any { get } }
extension OptionGroup: AnyOptionGroup { var groupValue: Any { wrappedValue } }
