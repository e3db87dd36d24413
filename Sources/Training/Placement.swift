import Foundation
import Dist

/// Where the ranks of a communicator run: every rank's host name gathered to the coordinator,
/// for the log ("hosts: node1 (ranks 0,2), node2 (ranks 1,3)"). Ranks are world ranks, so a
/// fold group's line names the same ranks as mpirun does.
enum Placement {
    /// This process's host name (gethostname).
    static var hostName: String {
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else { return "unknown" }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Collective over `comm`: the line for its rank 0, nil on the other ranks.
    static func describe(_ comm: Communicator) throws -> String? {
        let me = MPIRuntime.isActive ? MPIRuntime.worldRank : comm.rank
        guard let all = try comm.gather(bytes: Array("\(me) \(hostName)".utf8), root: 0) else { return nil }
        var order: [String] = [], ranks: [String: [Int]] = [:]
        for entry in all {
            let text = String(decoding: entry, as: UTF8.self)
            guard let space = text.firstIndex(of: " "), let rank = Int(text[..<space]) else { continue }
            let host = String(text[text.index(after: space)...])
            if ranks[host] == nil { order.append(host) }
            ranks[host, default: []].append(rank)
        }
        return "hosts: " + order.map { host in
            let r = ranks[host]!.sorted()
            return "\(host) (rank\(r.count > 1 ? "s" : "") \(r.map(String.init).joined(separator: ",")))"
        }.joined(separator: ", ")
    }
}
