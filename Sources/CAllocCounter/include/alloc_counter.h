#ifndef DISTRAINER_ALLOC_COUNTER_H
#define DISTRAINER_ALLOC_COUNTER_H
#include <stdint.h>

/* Counts heap allocations of the whole process (every thread, every library) while enabled.
   The allocator itself stays glibc's: malloc/calloc/realloc/free/memalign/posix_memalign/
   aligned_alloc defined in alloc_counter.c interpose the libc symbols (the executable's
   definitions come first in symbol lookup) and forward to glibc's __libc_* entry points. */

/* Starts counting (and clears the counters): every thread's allocations, or with
   this_thread_only only the calling thread's, in counters of that thread's own (several threads
   may count alone at once); the getters below, called on that thread, then read those. */
void distrainer_alloc_counter_start(int this_thread_only);
/* Stops the counting the calling thread's last start began; the counters keep their values. */
void distrainer_alloc_counter_stop(void);
/* Calls of malloc, calloc, realloc (a realloc counts as one allocation), memalign,
   posix_memalign, aligned_alloc while enabled. */
uint64_t distrainer_alloc_counter_allocations(void);
uint64_t distrainer_alloc_counter_frees(void);
uint64_t distrainer_alloc_counter_bytes(void);
/* Marks the calling thread as inside a library call whose own allocations cannot be avoided
   (oneDNN's dnnl_primitive_execute builds a std::unordered_map of its arguments per call):
   counted allocations made in between are also added to external_allocations, so a caller can
   tell them apart from its own. Two thread-local stores; cheap enough for the step loop. */
void distrainer_alloc_counter_enter_external(void);
void distrainer_alloc_counter_leave_external(void);
uint64_t distrainer_alloc_counter_external_allocations(void);
/* 1 when this file's malloc is the one the process calls (interposition worked). */
int distrainer_alloc_counter_active(void);

#endif
