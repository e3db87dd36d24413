import Testing
import Foundation
import CAllocCounter

/// The arena behind marked library calls (CAllocCounter): what a library allocates inside
/// `enter_external`/`leave_external` is served from the thread's arena (not counted as a system
/// allocation), survives the call intact, can be resized and freed anywhere, and what the arena
/// cannot serve goes to glibc and is counted as the library's.
@Suite(.serialized) struct AllocationArenaTests {
    /// Allocates `count` bytes filled with `byte` inside a marked call.
    private func libraryAllocation(_ count: Int, _ byte: UInt8, align: Int = 0) -> UnsafeMutableRawPointer {
        distrainer_alloc_counter_enter_external()
        defer { distrainer_alloc_counter_leave_external() }
        var p: UnsafeMutableRawPointer?
        let status = align > 0 ? posix_memalign(&p, align, count) : 0
        if align == 0 { p = malloc(count) }
        precondition(status == 0 && p != nil, "allocation of \(count) bytes failed")
        memset(p!, Int32(byte), count)
        return p!
    }

    @Test func smallAllocationsInsideMarkedCallsComeFromTheArenaAndAreReused() {
        free(libraryAllocation(64, 0))   // the first marked call on this thread maps its arena
        let ps = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: 20)
        defer { ps.deallocate() }
        let addresses = UnsafeMutablePointer<UInt>.allocate(capacity: 200 * 20)
        defer { addresses.deallocate() }
        var intact = true
        distrainer_alloc_counter_start(1)
        for round in 0..<200 {
            for i in 0..<20 { ps[i] = libraryAllocation(8 + 97 * i, UInt8(i + round % 7)) }
            for i in 0..<20 {
                let bytes = ps[i].assumingMemoryBound(to: UInt8.self)
                intact = intact && bytes[0] == UInt8(i + round % 7) && bytes[8 + 97 * i - 1] == UInt8(i + round % 7)
                addresses[round * 20 + i] = UInt(bitPattern: ps[i])
                free(ps[i])
            }
        }
        let aligned = libraryAllocation(100, 1, align: 64)
        free(aligned)
        distrainer_alloc_counter_stop()
        #expect(UInt(bitPattern: aligned) % 64 == 0)
        #expect(intact)
        #expect(distrainer_alloc_counter_allocations() == 0)
        #expect(distrainer_alloc_counter_arena_allocations() == 200 * 20 + 1)
        // Freed blocks are handed out again: 20 live blocks never need more than 20 addresses.
        #expect(Set(UnsafeBufferPointer(start: addresses, count: 200 * 20)).count == 20)
    }

    @Test func arenaBlocksOutliveTheCallAndMoveOnRealloc() throws {
        let p = libraryAllocation(100, 7)
        // Outside a marked call: realloc moves it to glibc (counted), contents kept.
        distrainer_alloc_counter_start(1)
        let q = realloc(p, 10_000)!.assumingMemoryBound(to: UInt8.self)
        distrainer_alloc_counter_stop()
        #expect(distrainer_alloc_counter_allocations() == 1)
        #expect((0..<100).allSatisfy { q[$0] == 7 })
        #expect(malloc_usable_size(q) >= 10_000)
        free(q)
        // Freed by another thread: back to this thread's arena, handed out again.
        let r = libraryAllocation(200, 3)
        #expect(malloc_usable_size(r) >= 200)
        let address = UInt(bitPattern: r)
        let done = DispatchSemaphore(value: 0)
        let box = UncheckedBox(r)
        Thread { free(box.pointer); done.signal() }.start()
        done.wait()
        let again = libraryAllocation(200, 4)
        #expect(UInt(bitPattern: again) == address)
        free(again)
    }

    @Test func callocReallocAndAlignmentInsideMarkedCalls() throws {
        distrainer_alloc_counter_enter_external()
        defer { distrainer_alloc_counter_leave_external() }
        let dirty = malloc(800)!
        memset(dirty, 0xFF, 800)
        free(dirty)
        let c = calloc(100, 8)!.assumingMemoryBound(to: UInt8.self)   // likely the block just freed
        #expect((0..<800).allSatisfy { c[$0] == 0 })
        for i in 0..<800 { c[i] = UInt8(i % 251) }
        let r = realloc(c, 3000)!.assumingMemoryBound(to: UInt8.self)
        #expect((0..<800).allSatisfy { r[$0] == UInt8($0 % 251) })
        #expect(realloc(r, 100)! == UnsafeMutableRawPointer(r))   // shrinking keeps the block
        var p: UnsafeMutableRawPointer?
        #expect(posix_memalign(&p, 32, 40) == 0 && UInt(bitPattern: p) % 32 == 0)
        // A size whose header arithmetic would wrap: not served from the arena, glibc refuses.
        #expect(malloc(Int.max - 8) == nil)
        #expect(calloc(1, Int.max - 8) == nil)
        free(r); free(p)
    }

    @Test func whatTheArenaCannotServeIsCountedAsTheLibrarys() {
        free(libraryAllocation(64, 0))   // this thread's arena exists
        var strict: UnsafeMutableRawPointer?
        distrainer_alloc_counter_start(1)
        distrainer_alloc_counter_enter_external()
        let big = malloc(16 << 20)                             // larger than the largest block
        let status = posix_memalign(&strict, 4096, 256)      // stricter alignment than 64
        distrainer_alloc_counter_leave_external()
        distrainer_alloc_counter_stop()
        #expect(status == 0 && big != nil)
        #expect(distrainer_alloc_counter_allocations() == 2)
        #expect(distrainer_alloc_counter_external_allocations() == 2)
        #expect(distrainer_alloc_counter_arena_allocations() == 0)
        #expect(UInt(bitPattern: strict) % 4096 == 0)
        free(big); free(strict)
    }
}

private final class UncheckedBox: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    init(_ p: UnsafeMutableRawPointer) { pointer = p }
}
