import ArgumentParser
import Dist
import Foundation
import Training

/// Starts MPI (under mpirun, or as a singleton), runs `body` with the world communicator and
/// finalises. An error on any rank is printed with the rank and the job is stopped cleanly: a
/// single process exits 1; a multi-rank job is aborted (MPI_Abort) so no rank waits forever.
/// A body that throws `ExitCode` has reported for itself (every rank agreed on the outcome):
/// MPI is finalised normally and the code returned.
enum MPISession {
    static func run(_ body: (Communicator) throws -> Void) throws {
        do { try MPIRuntime.start() } catch {
            FileHandle.standardError.write(Data("distrainer: cannot start MPI: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let comm = MPIRuntime.world
        do {
            try body(comm)
        } catch let code as ExitCode {
            try MPIRuntime.finish()
            throw code
        } catch {
            var message = comm.size > 1 ? "distrainer: rank \(comm.rank): error: \(error)\n" : "distrainer: error: \(error)\n"
            if case TrainingError.coordinatorFailed = error, comm.rank != 0 {
                message = "distrainer: rank \(comm.rank): stopping: rank 0 could not prepare the data (its message says why)\n"
            }
            FileHandle.standardError.write(Data(message.utf8))
            if comm.size > 1 { MPIRuntime.abort(code: 1) }
            try? MPIRuntime.finish()
            throw ExitCode(1)
        }
        try MPIRuntime.finish()
    }
}

/// OpenBLAS threads per rank: $OPENBLAS_NUM_THREADS when set, else 1.
func defaultThreads() -> Int {
    Int(ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] ?? "") ?? 1
}

/// Parses "1,2,3" into numbers, naming the option on error.
func parseList<T: LosslessStringConvertible>(_ text: String, name: String) throws -> [T] {
    try text.split(separator: ",").map {
        guard let v = T(String($0).trimmingCharacters(in: .whitespaces)) else {
            throw ValidationError("--\(name): '\($0)' is not a number")
        }
        return v
    }
}

/// Parses a byte size: a number with an optional unit (B, KB, MB, GB, TB; powers of 1024).
func parseBytes(_ text: String, name: String) throws -> Int {
    let t = text.trimmingCharacters(in: .whitespaces).uppercased()
    let units: [(String, Double)] = [("TB", 1_099_511_627_776), ("GB", 1_073_741_824), ("MB", 1_048_576), ("KB", 1024), ("B", 1)]
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        if let v = Double(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), v >= 0 { return Int(v * factor) }
        throw ValidationError("--\(name): '\(text)' is not a size such as 512MB or 2GB")
    }
    guard let v = Double(t), v >= 0 else { throw ValidationError("--\(name): '\(text)' is not a size such as 512MB or 2GB") }
    return Int(v)
}

/// Whether `path` is `folder` or inside it (both made absolute and standardised; no links resolved).
func isInside(_ path: String, _ folder: String) -> Bool {
    func parts(_ p: String) -> [String] {
        let cwd = FileManager.default.currentDirectoryPath
        let absolute = p.hasPrefix("/") ? p : (cwd as NSString).appendingPathComponent(p)
        return (absolute as NSString).standardizingPath.split(separator: "/").map(String.init)
    }
    let a = parts(path), b = parts(folder)
    return a.count >= b.count && Array(a.prefix(b.count)) == b
}

/// A switch option spelled on|off.
enum OnOff: String, ExpressibleByArgument, CaseIterable {
    case on, off
}
