import Testing
import Foundation
import TestSupport

/// What ships for clusters and containers: one runtime package list shared by the Makefile and
/// docker/Dockerfile that covers every library the built binary links, and scripts that pass
/// shellcheck. (The image itself is not built here: no container engine runs in CI.)
@Suite struct PackagingTests {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func text(_ relative: String) throws -> String {
        try String(contentsOf: Self.repo.appendingPathComponent(relative), encoding: .utf8)
    }

    func words(_ relative: String) throws -> [String] {
        try text(relative).split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).map(String.init)
    }

    /// The Dockerfile's stages, each from its FROM line to the next.
    func stages() throws -> [String] {
        let lines = try text("docker/Dockerfile").split(separator: "\n", omittingEmptySubsequences: false)
        var out: [String] = []
        for line in lines {
            if line.hasPrefix("FROM ") { out.append("") }
            if !out.isEmpty, !line.hasPrefix("#") { out[out.count - 1] += line + "\n" }
        }
        return out
    }

    @Test func makefileAndDockerfileShareThePackageLists() throws {
        let makefile = try text("Makefile")
        #expect(makefile.contains("$(shell cat packages/apt-build.txt)"))
        #expect(makefile.contains("$(shell cat packages/apt-runtime.txt)"))
        let s = try stages()
        #expect(s.count == 2)
        let build = try #require(s.first), runtime = try #require(s.last)
        #expect(build.contains("packages/apt-build.txt") && build.contains("xargs -a packages/apt-build.txt apt-get install"))
        #expect(runtime.hasPrefix("FROM debian:12-slim"))
        #expect(runtime.contains("COPY packages/apt-runtime.txt /tmp/apt-runtime.txt"))
        #expect(runtime.contains("xargs -a /tmp/apt-runtime.txt apt-get install"))
        // The runtime stage installs nothing but the list (no package named inline).
        let installs = runtime.components(separatedBy: "apt-get install").count - 1
        #expect(installs == 1)
        #expect(!runtime.contains("-dev"))
        #expect(Set(try words("packages/apt-runtime.txt")).isDisjoint(with: try words("packages/apt-build.txt").filter { $0.hasSuffix("-dev") }))
    }

    /// Every shared library `distrainer` needs (ELF NEEDED entries) belongs to a package of
    /// packages/apt-runtime.txt or of Debian 12 slim itself; libraries no Debian package owns are
    /// the Swift toolchain's (linked statically in the image with --static-swift-stdlib).
    @Test func runtimeListCoversTheLinkedLibraries() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/dpkg"), FileManager.default.isExecutableFile(atPath: "/usr/bin/readelf") else {
            print("skipped: dpkg or readelf missing (not Debian?)"); return
        }
        let runtime = Set(try words("packages/apt-runtime.txt"))
        let base: Set<String> = ["libc6", "libgcc-s1", "libstdc++6"]
        let binary = TestSupport.distrainerPath
        let needed = try TestSupport.run("/usr/bin/readelf", ["-d", binary]).stdout.split(separator: "\n")
            .compactMap { line -> String? in
                guard line.contains("(NEEDED)"), let a = line.firstIndex(of: "["), let b = line.lastIndex(of: "]") else { return nil }
                return String(line[line.index(after: a)..<b])
            }
        #expect(needed.count >= 5)
        let ldd = try TestSupport.run("/usr/bin/ldd", [binary]).stdout
        var owners: [String: String] = [:], unowned: [String] = []
        for lib in needed {
            // "libpng16.so.16 => /lib/x86_64-linux-gnu/libpng16.so.16 (0x…)"
            guard let line = ldd.split(separator: "\n").first(where: { $0.trimmingCharacters(in: .whitespaces).hasPrefix(lib + " =>") }),
                  let path = line.split(separator: " ").first(where: { $0.hasPrefix("/") }) else {
                Issue.record("ldd does not resolve \(lib)"); continue
            }
            if let p = try owner(of: String(path)) { owners[lib] = p } else { unowned.append(lib) }
        }
        #expect(unowned.allSatisfy { $0.hasPrefix("libswift") || $0.hasPrefix("libFoundation") || $0 == "libdispatch.so" || $0 == "libBlocksRuntime.so" },
                "libraries no Debian package owns: \(unowned)")
        for (lib, package) in owners.sorted(by: { $0.key < $1.key }) {
            #expect(runtime.contains(package) || base.contains(package), "\(lib) comes from \(package), missing in packages/apt-runtime.txt")
        }
        #expect(Set(owners.values).subtracting(base).count >= 4)   // MPI, BLAS, PNG, curl, JPEG, zlib — not vacuous
        // mpirun itself and the ssh server it uses between containers.
        if let mpirun = try owner(of: "/usr/bin/mpirun") { #expect(runtime.contains(mpirun), "mpirun comes from \(mpirun)") }
        #expect(runtime.contains("openssh-server") && runtime.contains("openssh-client"))
    }

    /// The Debian package owning `path` (symbolic links followed; /usr-merged paths tried both ways).
    func owner(of path: String) throws -> String? {
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        var candidates = [real, path]
        for p in [real, path] {
            if p.hasPrefix("/usr/") { candidates.append(String(p.dropFirst(4))) } else { candidates.append("/usr" + p) }
        }
        for c in candidates {
            let r = try TestSupport.run("/usr/bin/dpkg", ["-S", c])
            if r.status == 0, let first = r.stdout.split(separator: "\n").first, let colon = first.firstIndex(of: ":") {
                return String(first[..<colon])
            }
        }
        return nil
    }

    /// docker/hostfile names exactly the compose services' hostnames.
    @Test func composeHostnamesMatchItsHostfile() throws {
        let hosts = try text("docker/hostfile").split(separator: "\n")
            .map { $0.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0].trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }.map { String($0.split(separator: " ")[0]) }
        let compose = try text("docker/compose.yaml").split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.hasPrefix("hostname:") }
            .map { $0.dropFirst("hostname:".count).trimmingCharacters(in: .whitespaces) }
        #expect(!hosts.isEmpty)
        #expect(Set(hosts) == Set(compose))
    }

    /// shellcheck (Debian's `shellcheck`, installed by `make test`) finds nothing in any script.
    @Test func scriptsPassShellcheck() throws {
        guard let shellcheck = ["/usr/bin/shellcheck", "/usr/local/bin/shellcheck"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            print("skipped: shellcheck not installed (apt-get install shellcheck)"); return
        }
        var scripts: [String] = []
        for dir in ["scripts", "tools", "docker", "slurm"] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: Self.repo.appendingPathComponent(dir).path)) ?? []
            scripts += names.filter { $0.hasSuffix(".sh") || $0.hasSuffix(".sbatch") }.map { Self.repo.appendingPathComponent("\(dir)/\($0)").path }
        }
        #expect(scripts.count >= 5)
        let r = try TestSupport.run(shellcheck, scripts.sorted())
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
    }
}
