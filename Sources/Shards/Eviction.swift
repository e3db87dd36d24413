/// Which entry a full cache tier gives up to make room.
public enum EvictionPolicy: String, Sendable, CaseIterable, Codable {
    /// The least recently used entry.
    case lru
    /// The entry whose next planned use is farthest in the future (Belady's rule on the plan the
    /// sampler provides): entries the plan never uses again go first; ties go by LRU. Without a
    /// plan this is LRU.
    case lookAhead = "look-ahead"
}

/// The future access order of one rank (e.g. the rest of this epoch followed by the next
/// epoch, from `ShardedSampler`), consumed access by access.
///
/// Each access of a key consumes that key's earliest remaining planned position, so accesses
/// that arrive slightly out of order (several loader threads) still line up with the plan.
/// Storage: one `Int` per planned position plus one dictionary entry per distinct key.
public struct AccessPlan<Key: Hashable>: Sendable where Key: Sendable {
    /// `following[p]`: the next position of the key at position `p`, or -1.
    private var following: [Int]
    /// Each key's next unconsumed planned position.
    private var head: [Key: Int]

    public init(_ sequence: [Key] = []) {
        following = [Int](repeating: -1, count: sequence.count)
        head = [:]
        head.reserveCapacity(sequence.count)
        for p in stride(from: sequence.count - 1, through: 0, by: -1) {
            following[p] = head[sequence[p]] ?? -1
            head[sequence[p]] = p
        }
    }

    /// Planned positions in total (consumed ones included).
    public var length: Int { following.count }

    /// The position of `key`'s next planned use, or `Int.max` when the plan does not use it again.
    public func nextUse(_ key: Key) -> Int { head[key] ?? Int.max }

    /// Records one access of `key`: its next planned use becomes the one after.
    public mutating func consume(_ key: Key) {
        guard let p = head[key] else { return }
        let n = following[p]
        if n >= 0 { head[key] = n } else { head.removeValue(forKey: key) }
    }
}

/// The bookkeeping of one byte-bounded cache tier: which keys are resident, their sizes, and
/// which one to evict next under an `EvictionPolicy`. It holds no data; the caller stores the
/// values and the plan, and passes each key's next planned use when it changes.
///
/// `used` never exceeds `capacity`: `insert` evicts first, and refuses an entry larger than
/// the whole tier.
///
/// Victims come from a max-heap of (next use, age) with lazy deletion: touching an entry pushes
/// a fresh heap item and leaves the old one stale, so each operation is O(log n); the heap is
/// rebuilt when stale items outnumber live ones.
struct TierIndex<Key: Hashable> {
    let capacity: Int
    let policy: EvictionPolicy
    private(set) var used = 0
    private var entries: [Key: Entry] = [:]
    private var heap: [HeapItem] = []
    private var clock = 0

    struct Entry {
        var size: Int
        var lastUse: Int
        var nextUse: Int
        var version: Int
    }

    struct HeapItem {
        var nextUse: Int
        var lastUse: Int
        var key: Key
        var version: Int
        /// Evicted first: farthest next use (look-ahead only), then least recently used.
        func before(_ o: HeapItem) -> Bool {
            nextUse != o.nextUse ? nextUse > o.nextUse : lastUse < o.lastUse
        }
    }

    init(capacity: Int, policy: EvictionPolicy) {
        self.capacity = capacity
        self.policy = policy
    }

    var count: Int { entries.count }
    var keys: Dictionary<Key, Entry>.Keys { entries.keys }
    func contains(_ key: Key) -> Bool { entries[key] != nil }
    func size(of key: Key) -> Int? { entries[key]?.size }

    /// Records an access of a resident key (it becomes the most recently used) with its new
    /// next planned use.
    mutating func touch(_ key: Key, nextUse: Int) {
        guard var e = entries[key] else { return }
        clock += 1
        e.lastUse = clock
        e.nextUse = nextUse
        e.version += 1
        entries[key] = e
        push(key, e)
    }

    /// Updates a resident key's next planned use without counting an access.
    mutating func replan(_ key: Key, nextUse: Int) {
        guard var e = entries[key], policy == .lookAhead, e.nextUse != nextUse else { return }
        e.nextUse = nextUse
        e.version += 1
        entries[key] = e
        push(key, e)
    }

    /// The key that would be evicted next, and its next planned use.
    mutating func peekVictim() -> (key: Key, nextUse: Int)? {
        while let top = heap.first {
            if let e = entries[top.key], e.version == top.version { return (top.key, top.nextUse) }
            popTop()
        }
        return nil
    }

    /// Makes room for `size` bytes by evicting, then adds `key` (replacing an entry with the
    /// same key). Returns the evicted keys, or nil (and changes nothing) when `size` exceeds
    /// the capacity.
    mutating func insert(_ key: Key, size: Int, nextUse: Int) -> [(key: Key, size: Int)]? {
        guard size <= capacity, size >= 0 else { return nil }
        _ = remove(key)
        var evicted: [(key: Key, size: Int)] = []
        while used + size > capacity, let victim = peekVictim() {
            if let s = remove(victim.key) { evicted.append((victim.key, s)) }
        }
        clock += 1
        let e = Entry(size: size, lastUse: clock, nextUse: nextUse, version: 0)
        entries[key] = e
        used += size
        push(key, e)
        return evicted
    }

    /// Removes `key`; returns its size if it was resident.
    @discardableResult
    mutating func remove(_ key: Key) -> Int? {
        guard let e = entries.removeValue(forKey: key) else { return nil }
        used -= e.size
        return e.size
    }

    /// Re-reads every resident key's next planned use (after a new plan).
    mutating func replanAll(_ nextUse: (Key) -> Int) {
        guard policy == .lookAhead else { return }
        for (k, var e) in entries {
            e.nextUse = nextUse(k)
            e.version += 1
            entries[k] = e
        }
        rebuildHeap()
    }

    // MARK: Heap

    private func item(_ key: Key, _ e: Entry) -> HeapItem {
        HeapItem(nextUse: policy == .lookAhead ? e.nextUse : 0, lastUse: e.lastUse, key: key, version: e.version)
    }

    private mutating func push(_ key: Key, _ e: Entry) {
        if heap.count > 2 * entries.count + 64 { rebuildHeap(); return }
        heap.append(item(key, e))
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].before(heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func popTop() {
        heap.swapAt(0, heap.count - 1)
        heap.removeLast()
        siftDown(0)
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var best = i
            if l < heap.count && heap[l].before(heap[best]) { best = l }
            if r < heap.count && heap[r].before(heap[best]) { best = r }
            if best == i { return }
            heap.swapAt(i, best)
            i = best
        }
    }

    private mutating func rebuildHeap() {
        heap = entries.map { item($0.key, $0.value) }
        var i = heap.count / 2
        while i > 0 { i -= 1; siftDown(i) }
    }
}
