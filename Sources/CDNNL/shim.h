#ifndef DISTRAINER_CDNNL_H
#define DISTRAINER_CDNNL_H
// oneDNN 2.6 C API (Debian libdnnl-dev ships no pkg-config file; <dnnl.h> is on the default
// include path). DNNL_MEMORY_NONE/ALLOCATE are pointer-cast macros Swift cannot import.
#include <dnnl.h>

static inline void *cdnnl_memory_none(void) { return DNNL_MEMORY_NONE; }
static inline void *cdnnl_memory_allocate(void) { return DNNL_MEMORY_ALLOCATE; }

// libdnnl's Debian build runs on OpenMP (libgomp); its thread count is OpenMP's.
void omp_set_num_threads(int);
int omp_get_max_threads(void);
#endif
