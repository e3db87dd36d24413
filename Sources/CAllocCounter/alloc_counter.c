#define _GNU_SOURCE
#include "alloc_counter.h"
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

/* glibc's own allocator entry points (exported by libc.so.6 since 2.2.5). */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

static atomic_int enabled;
/* Counting limited to one thread (tests run beside other tests in the same process). */
static __thread int thread_enabled __attribute__((tls_model("initial-exec")));
static atomic_int seen;
static atomic_uint_fast64_t allocations, frees, bytes;
/* Set while this thread is inside a library call marked as external (see alloc_counter.h). */
static __thread int thread_external __attribute__((tls_model("initial-exec")));
static atomic_uint_fast64_t external_allocations;

static inline void count_allocation(size_t n) {
    atomic_store_explicit(&seen, 1, memory_order_relaxed);
    if (thread_enabled || atomic_load_explicit(&enabled, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&bytes, n, memory_order_relaxed);
        if (thread_external) atomic_fetch_add_explicit(&external_allocations, 1, memory_order_relaxed);
    }
}

void *malloc(size_t n) { count_allocation(n); return __libc_malloc(n); }
void *calloc(size_t c, size_t n) { count_allocation(c * n); return __libc_calloc(c, n); }
void *realloc(void *p, size_t n) { count_allocation(n); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { count_allocation(n); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { count_allocation(n); return __libc_memalign(a, n); }

int posix_memalign(void **out, size_t a, size_t n) {
    if (a < sizeof(void *) || (a & (a - 1)) != 0) return EINVAL;
    count_allocation(n);
    void *p = __libc_memalign(a, n);
    if (p == NULL && n != 0) return ENOMEM;
    *out = p;
    return 0;
}

void free(void *p) {
    if (p != NULL && (thread_enabled || atomic_load_explicit(&enabled, memory_order_relaxed)))
        atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed);
    __libc_free(p);
}

void distrainer_alloc_counter_start(int this_thread_only) {
    atomic_store(&allocations, 0); atomic_store(&frees, 0); atomic_store(&bytes, 0);
    atomic_store(&external_allocations, 0); atomic_store(&seen, 0);
    if (this_thread_only) thread_enabled = 1; else atomic_store(&enabled, 1);
}
void distrainer_alloc_counter_stop(void) { thread_enabled = 0; atomic_store(&enabled, 0); }
uint64_t distrainer_alloc_counter_allocations(void) { return atomic_load(&allocations); }
uint64_t distrainer_alloc_counter_frees(void) { return atomic_load(&frees); }
uint64_t distrainer_alloc_counter_bytes(void) { return atomic_load(&bytes); }
void distrainer_alloc_counter_enter_external(void) { thread_external = 1; }
void distrainer_alloc_counter_leave_external(void) { thread_external = 0; }
uint64_t distrainer_alloc_counter_external_allocations(void) { return atomic_load(&external_allocations); }

int distrainer_alloc_counter_active(void) {
    atomic_store(&seen, 0);
    char *volatile p = strdup("x");  /* glibc allocates through the (interposable) malloc symbol */
    free(p);
    return atomic_load(&seen);
}
