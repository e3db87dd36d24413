import CAllocCounter

/// A call into a library (MPI in Dist, oneDNN's execute in Model) whose own small, transient allocations its
/// caller cannot avoid: marked for the allocation counter (`CAllocCounter`), so they come from
/// the thread's arena reserved on the first call instead of the system allocator, and anything
/// the arena cannot serve is counted as the library's (`external_allocations`).
public enum LibraryCall {
    @inline(__always) public static func run<T>(_ body: () -> T) -> T {
        distrainer_alloc_counter_enter_external()
        defer { distrainer_alloc_counter_leave_external() }
        return body()
    }
}
