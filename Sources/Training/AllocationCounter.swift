import CAllocCounter

/// Counts heap allocations of the whole process while running `body` (all threads and libraries:
/// Swift, MPI, OpenBLAS); allocations inside marked library calls come from a per-thread arena
/// and are counted apart (`arenaAllocations`). The counter is the `CAllocCounter` shim, which defines `malloc`,
/// `calloc`, `realloc`, `free`, `memalign`, `posix_memalign` and `aligned_alloc` in the
/// executable and forwards them to glibc's `__libc_*` functions: the dynamic linker resolves every
/// library's calls to the executable's definitions first. (glibc 2.34 removed `__malloc_hook`, and
/// `mallinfo2()` deltas only show net bytes in use, missing an allocation freed again in the window.)
public enum AllocationCounter {
    public struct Counts: Sendable {
        public var allocations: UInt64
        public var frees: UInt64
        public var bytes: UInt64
        /// Allocations inside marked library calls (oneDNN's execute, MPI) served from the
        /// per-thread arena instead of the system allocator (not in `allocations`).
        public var arenaAllocations: UInt64
    }

    /// Whether the interposed allocator is the one in use (false, e.g., under a sanitizer that
    /// brings its own malloc): counts are meaningful only then.
    public static var isActive: Bool { distrainer_alloc_counter_active() != 0 }

    /// Allocations made while `body` runs: by any thread, or with `thisThreadOnly` by the calling
    /// thread only (for tests, which share the process with other tests).
    public static func count(thisThreadOnly: Bool = false, _ body: () throws -> Void) rethrows -> Counts {
        distrainer_alloc_counter_start(thisThreadOnly ? 1 : 0)
        defer { distrainer_alloc_counter_stop() }
        try body()
        distrainer_alloc_counter_stop()
        return Counts(allocations: distrainer_alloc_counter_allocations(), frees: distrainer_alloc_counter_frees(),
                      bytes: distrainer_alloc_counter_bytes(), arenaAllocations: distrainer_alloc_counter_arena_allocations())
    }
}
