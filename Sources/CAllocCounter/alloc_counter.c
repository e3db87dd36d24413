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

/* This thread's counts while it counts alone (tests counting on several threads at once do not
   disturb each other), and whether its last start was such a one (the getters then read them). */
/* initial-exec on each: no __tls_get_addr (which may allocate) inside malloc. */
#define COUNTER_TLS static __thread __attribute__((tls_model("initial-exec")))
COUNTER_TLS uint64_t t_allocations;
COUNTER_TLS uint64_t t_frees;
COUNTER_TLS uint64_t t_bytes;
COUNTER_TLS uint64_t t_external;
static __thread int thread_mode __attribute__((tls_model("initial-exec")));

static inline void count_allocation(size_t n) {
    atomic_store_explicit(&seen, 1, memory_order_relaxed);
    if (thread_enabled) {
        t_allocations++; t_bytes += n;
        if (thread_external) t_external++;
    }
    if (atomic_load_explicit(&enabled, memory_order_relaxed)) {
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
    if (p != NULL && thread_enabled) t_frees++;
    if (p != NULL && atomic_load_explicit(&enabled, memory_order_relaxed))
        atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed);
    __libc_free(p);
}

void distrainer_alloc_counter_start(int this_thread_only) {
    thread_mode = this_thread_only != 0;
    if (this_thread_only) {
        t_allocations = 0; t_frees = 0; t_bytes = 0; t_external = 0;
        thread_enabled = 1;
    } else {
        atomic_store(&allocations, 0); atomic_store(&frees, 0); atomic_store(&bytes, 0);
        atomic_store(&external_allocations, 0);
        atomic_store(&enabled, 1);
    }
    atomic_store(&seen, 0);
}
void distrainer_alloc_counter_stop(void) {
    if (thread_mode) thread_enabled = 0; else atomic_store(&enabled, 0);
}
uint64_t distrainer_alloc_counter_allocations(void) { return thread_mode ? t_allocations : atomic_load(&allocations); }
uint64_t distrainer_alloc_counter_frees(void) { return thread_mode ? t_frees : atomic_load(&frees); }
uint64_t distrainer_alloc_counter_bytes(void) { return thread_mode ? t_bytes : atomic_load(&bytes); }
void distrainer_alloc_counter_enter_external(void) { thread_external = 1; }
void distrainer_alloc_counter_leave_external(void) { thread_external = 0; }
uint64_t distrainer_alloc_counter_external_allocations(void) {
    return thread_mode ? t_external : atomic_load(&external_allocations);
}

int distrainer_alloc_counter_active(void) {
    atomic_store(&seen, 0);
    char *volatile p = strdup("x");  /* glibc allocates through the (interposable) malloc symbol */
    free(p);
    return atomic_load(&seen);
}
