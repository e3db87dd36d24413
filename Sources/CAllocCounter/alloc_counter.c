#define _GNU_SOURCE
#include "alloc_counter.h"
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
/* OpenMP's (libgomp, loaded with oneDNN; weak: NULL without it). distrainer itself runs no OpenMP
   region, so a thread inside one is running a oneDNN kernel: a library call as well. */
extern int omp_in_parallel(void) __attribute__((weak));
static inline int inside_library(void) { return thread_external || (omp_in_parallel != NULL && omp_in_parallel()); }
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
        if (inside_library()) t_external++;
    }
    if (atomic_load_explicit(&enabled, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&bytes, n, memory_order_relaxed);
        if (inside_library()) atomic_fetch_add_explicit(&external_allocations, 1, memory_order_relaxed);
    }
}

/* ---- The library-call arena ------------------------------------------------------------------
   Each thread that enters a marked library call gets an arena: ARENA_BYTES of address space
   mapped once (MAP_NORESERVE: pages are touched only as used), carved into power-of-two blocks
   (2^ARENA_MIN_SHIFT .. 2^ARENA_MAX_SHIFT bytes including a 16-byte header) with a free list per
   size. Inside a marked call, malloc/calloc/realloc/aligned requests up to 2^ARENA_MAX_SHIFT (and
   alignment up to 64) are served from the thread's arena; everything else goes to glibc and is
   counted. A block is returned to its own arena's free list by whichever thread frees it (a
   spin lock per arena; uncontended except for cross-thread frees), so blocks a library keeps
   beyond the call simply stay taken. free() tells arena blocks apart by address range. */
#define ARENA_BYTES ((size_t)64 << 20)
#define ARENA_MAX 64
#define ARENA_MIN_SHIFT 5            /* 32 bytes */
#define ARENA_MAX_SHIFT 23           /* 8 MiB: a 4 MB gradient bucket's MPI temporary fits */
#define ARENA_CLASSES (ARENA_MAX_SHIFT - ARENA_MIN_SHIFT + 1)
#define ARENA_MAGIC 0x41524e41u      /* "ARNA": a live block */
#define ARENA_FREED 0x46524545u      /* "FREE": on a free list */

struct arena_header { uint32_t magic; uint16_t arena; uint8_t cls; uint8_t unused; uint32_t offset; uint32_t unused2; };
struct arena_free { struct arena_free *next; };
struct arena {
    _Atomic(char *) base;
    size_t top;                               /* bump pointer (under lock) */
    struct arena_free *free_lists[ARENA_CLASSES];
    atomic_flag lock;
};
static struct arena arenas[ARENA_MAX];
static atomic_int arena_count;
static __thread int thread_arena __attribute__((tls_model("initial-exec")));   /* index + 1; 0 none; -1 unavailable */
static atomic_uint_fast64_t arena_allocations;
COUNTER_TLS uint64_t t_arena;

static inline void arena_lock(struct arena *a) {
    while (atomic_flag_test_and_set_explicit(&a->lock, memory_order_acquire)) sched_yield();
}
static inline void arena_unlock(struct arena *a) { atomic_flag_clear_explicit(&a->lock, memory_order_release); }

/* A child forked while another thread held an arena's lock would wait for it forever. */
static void arena_unlock_all_in_child(void) {
    for (int i = 0; i < ARENA_MAX; i++) atomic_flag_clear(&arenas[i].lock);
}
__attribute__((constructor)) static void arena_register_fork_handler(void) {
    pthread_atfork(NULL, NULL, arena_unlock_all_in_child);
}

/* The calling thread's arena (made on its first marked call), or NULL. */
static struct arena *own_arena(void) {
    if (thread_arena > 0) return &arenas[thread_arena - 1];
    if (thread_arena < 0) return NULL;
    int i = atomic_fetch_add(&arena_count, 1);
    if (i >= ARENA_MAX) { atomic_fetch_sub(&arena_count, 1); thread_arena = -1; return NULL; }
    void *base = mmap(NULL, ARENA_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) { thread_arena = -1; return NULL; }
    atomic_flag_clear(&arenas[i].lock);
    atomic_store_explicit(&arenas[i].base, (char *)base, memory_order_release);
    thread_arena = i + 1;
    return &arenas[i];
}

/* The arena holding p, or NULL (any thread's). */
static inline struct arena *arena_of(const void *p) {
    int n = atomic_load_explicit(&arena_count, memory_order_acquire);
    if (n > ARENA_MAX) n = ARENA_MAX;
    for (int i = 0; i < n; i++) {
        char *b = atomic_load_explicit(&arenas[i].base, memory_order_acquire);
        if (b != NULL && (const char *)p >= b && (const char *)p < b + ARENA_BYTES) return &arenas[i];
    }
    return NULL;
}

/* A block for n bytes aligned to align (≤ 64) from the calling thread's arena, or NULL. */
static void *arena_allocate(size_t n, size_t align) {
    if (align > 64 || (align & (align - 1)) != 0) return NULL;
    if (align < 16) align = 16;
    if (n > ((size_t)1 << ARENA_MAX_SHIFT)) return NULL;   /* before the sum below could wrap */
    size_t need = n + sizeof(struct arena_header) + (align - 16);
    if (need > ((size_t)1 << ARENA_MAX_SHIFT)) return NULL;
    struct arena *a = own_arena();
    if (a == NULL) return NULL;
    int cls = 0;
    while (((size_t)1 << (cls + ARENA_MIN_SHIFT)) < need) cls++;
    size_t size = (size_t)1 << (cls + ARENA_MIN_SHIFT);
    char *block;
    arena_lock(a);
    if (a->free_lists[cls] != NULL) {
        /* A freed block: its link is in its old user area, its old header says where it starts. */
        struct arena_free *f = a->free_lists[cls];
        a->free_lists[cls] = f->next;
        block = (char *)f - ((struct arena_header *)f - 1)->offset;
    } else if (a->top + size <= ARENA_BYTES) {
        block = atomic_load_explicit(&a->base, memory_order_relaxed) + a->top;
        a->top += size;
    } else {
        block = NULL;
    }
    arena_unlock(a);
    if (block == NULL) return NULL;
    /* Blocks start 16-aligned (the base is page-aligned, sizes are multiples of 32). */
    uintptr_t user = ((uintptr_t)block + sizeof(struct arena_header) + align - 1) & ~(uintptr_t)(align - 1);
    struct arena_header *h = (struct arena_header *)user - 1;
    h->magic = ARENA_MAGIC; h->arena = (uint16_t)(a - arenas); h->cls = (uint8_t)cls;
    h->offset = (uint32_t)(user - (uintptr_t)block);
    if (thread_enabled) t_arena++;
    if (atomic_load_explicit(&enabled, memory_order_relaxed))
        atomic_fetch_add_explicit(&arena_allocations, 1, memory_order_relaxed);
    return (void *)user;
}

static inline size_t arena_usable(const void *p) {
    const struct arena_header *h = (const struct arena_header *)p - 1;
    return ((size_t)1 << (h->cls + ARENA_MIN_SHIFT)) - h->offset;
}

/* Puts p on its class's free list (the link in p's user area, the header kept). A pointer that
   is not a live block of this arena (a double or invalid free) aborts, as glibc would. */
static void arena_release(struct arena *a, void *p) {
    struct arena_header *h = (struct arena_header *)p - 1;
    if (h->magic != ARENA_MAGIC || h->cls >= ARENA_CLASSES || h->arena != (uint16_t)(a - arenas)) abort();
    int cls = h->cls;
    h->magic = ARENA_FREED;
    struct arena_free *f = (struct arena_free *)p;
    arena_lock(a);
    f->next = a->free_lists[cls];
    a->free_lists[cls] = f;
    arena_unlock(a);
}

/* In a marked call: the arena first, then glibc (counted). Elsewhere: glibc (counted). */
static inline void *allocate(size_t n, size_t align) {
    if (inside_library()) {
        void *p = arena_allocate(n, align);
        if (p != NULL) return p;
    }
    count_allocation(n);
    return align <= 16 ? __libc_malloc(n) : __libc_memalign(align, n);
}

void *malloc(size_t n) { return allocate(n, 16); }
void *calloc(size_t c, size_t n) {
    if (n != 0 && c > SIZE_MAX / n) { errno = ENOMEM; return NULL; }
    if (inside_library()) {
        void *p = arena_allocate(c * n, 16);
        if (p != NULL) { memset(p, 0, c * n); return p; }
    }
    count_allocation(c * n);
    return __libc_calloc(c, n);
}
void *realloc(void *p, size_t n) {
    struct arena *a = p != NULL ? arena_of(p) : NULL;
    if (a == NULL && !inside_library()) { count_allocation(n); return __libc_realloc(p, n); }
    if (a == NULL && p != NULL) { count_allocation(n); return __libc_realloc(p, n); }
    /* An arena block (or a fresh allocation inside a marked call): keep it if it fits, else move it. */
    if (n == 0 && p != NULL) { free(p); return NULL; }
    if (p != NULL && n <= arena_usable(p)) return p;
    void *q = allocate(n, 16);
    if (q != NULL && p != NULL) {
        size_t old = arena_usable(p);
        memcpy(q, p, old < n ? old : n);
        arena_release(a, p);
    }
    return q;
}
void *memalign(size_t a, size_t n) { return allocate(n, a); }
void *aligned_alloc(size_t a, size_t n) { return allocate(n, a); }

int posix_memalign(void **out, size_t a, size_t n) {
    if (a < sizeof(void *) || (a & (a - 1)) != 0) return EINVAL;
    void *p = allocate(n, a);
    if (p == NULL && n != 0) return ENOMEM;
    *out = p;
    return 0;
}

size_t malloc_usable_size(void *p) {
    if (p == NULL) return 0;
    if (arena_of(p) != NULL) return arena_usable(p);
    typedef size_t (*usable_fn)(void *);
    static _Atomic(usable_fn) libc_usable;
    usable_fn f = atomic_load_explicit(&libc_usable, memory_order_relaxed);
    if (f == NULL) {
        f = (usable_fn)dlsym(RTLD_NEXT, "malloc_usable_size");
        atomic_store_explicit(&libc_usable, f, memory_order_relaxed);
    }
    return f != NULL ? f(p) : 0;
}

void free(void *p) {
    if (p == NULL) return;
    struct arena *a = arena_of(p);
    if (a != NULL) { arena_release(a, p); return; }
    if (thread_enabled) t_frees++;
    if (atomic_load_explicit(&enabled, memory_order_relaxed))
        atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed);
    __libc_free(p);
}

void distrainer_alloc_counter_start(int this_thread_only) {
    thread_mode = this_thread_only != 0;
    if (this_thread_only) {
        t_allocations = 0; t_frees = 0; t_bytes = 0; t_external = 0; t_arena = 0;
        thread_enabled = 1;
    } else {
        atomic_store(&allocations, 0); atomic_store(&frees, 0); atomic_store(&bytes, 0);
        atomic_store(&external_allocations, 0);
        atomic_store(&arena_allocations, 0);
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

uint64_t distrainer_alloc_counter_arena_allocations(void) {
    return thread_mode ? t_arena : atomic_load(&arena_allocations);
}

int distrainer_alloc_counter_active(void) {
    atomic_store(&seen, 0);
    char *volatile p = strdup("x");  /* glibc allocates through the (interposable) malloc symbol */
    free(p);
    return atomic_load(&seen);
}
