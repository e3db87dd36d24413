#ifndef DISTRAINER_ALLOC_COUNTER_H
#define DISTRAINER_ALLOC_COUNTER_H
#include <stddef.h>
#include <stdint.h>

/* Counts heap allocations of the whole process (every thread, every library) while enabled.
   malloc/calloc/realloc/free/memalign/posix_memalign/aligned_alloc/malloc_usable_size defined in
   alloc_counter.c interpose the libc symbols (the executable's definitions come first in symbol
   lookup) and forward to glibc's __libc_* entry points, except inside a marked library call
   (below), whose small transient allocations come from a per-thread arena reserved once. */

/* Starts counting (and clears the counters): every thread's allocations, or with
   this_thread_only only the calling thread's, in counters of that thread's own (several threads
   may count alone at once); the getters below, called on that thread, then read those. */
void distrainer_alloc_counter_start(int this_thread_only);
/* Stops the counting the calling thread's last start began; the counters keep their values. */
void distrainer_alloc_counter_stop(void);
/* Calls of malloc, calloc, realloc (a realloc counts as one allocation), memalign,
   posix_memalign, aligned_alloc served by glibc while enabled (arena blocks are not counted
   here: see arena_allocations). */
uint64_t distrainer_alloc_counter_allocations(void);
uint64_t distrainer_alloc_counter_frees(void);
uint64_t distrainer_alloc_counter_bytes(void);
/* Marks the calling thread as inside a library call whose own allocations its caller cannot
   avoid (oneDNN's dnnl_primitive_execute builds a std::unordered_map of its arguments per call;
   OpenMPI's collectives allocate requests and temporaries). Threads inside an OpenMP parallel
   region (oneDNN's kernels with --threads > 1; distrainer runs none of its own) count as inside
   a library call too. Allocations made in between come
   from the thread's arena: 64 MiB of address space mapped once per thread on its first marked
   call (pages are touched only as used), power-of-two blocks of 32 B..8 MiB with free lists,
   alignment up to 64; a block goes
   back to its arena whichever thread frees it. What the arena cannot serve (larger, stricter
   alignment, arena full) goes to glibc, is counted, and is also added to external_allocations,
   so a caller can tell a library's unavoidable allocations apart from its own. Two
   thread-local stores; cheap enough for the step loop. */
void distrainer_alloc_counter_enter_external(void);
void distrainer_alloc_counter_leave_external(void);
uint64_t distrainer_alloc_counter_external_allocations(void);
/* Allocations served from the arenas while enabled (not counted in allocations). */
uint64_t distrainer_alloc_counter_arena_allocations(void);
/* glibc's malloc_usable_size, also for arena blocks (declared here for Swift). */
size_t malloc_usable_size(void *p);
/* 1 when this file's malloc is the one the process calls (interposition worked). */
int distrainer_alloc_counter_active(void);

#endif
