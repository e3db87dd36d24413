#ifndef DISTRAINER_CMPI_H
#define DISTRAINER_CMPI_H
#include <mpi.h>

/* OpenMPI defines its predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) as macros
   over addresses of global structs, which Swift cannot import. These accessors return them. */

/* Communicators and requests */
static inline MPI_Comm shim_MPI_COMM_WORLD(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm shim_MPI_COMM_NULL(void) { return MPI_COMM_NULL; }
static inline MPI_Request shim_MPI_REQUEST_NULL(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *shim_MPI_STATUS_IGNORE(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Status *shim_MPI_STATUSES_IGNORE(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Errhandler shim_MPI_ERRORS_RETURN(void) { return MPI_ERRORS_RETURN; }
static inline void *shim_MPI_IN_PLACE(void) { return MPI_IN_PLACE; }

/* Datatypes */
static inline MPI_Datatype shim_MPI_FLOAT(void) { return MPI_FLOAT; }
static inline MPI_Datatype shim_MPI_DOUBLE(void) { return MPI_DOUBLE; }
static inline MPI_Datatype shim_MPI_INT32_T(void) { return MPI_INT32_T; }
static inline MPI_Datatype shim_MPI_INT64_T(void) { return MPI_INT64_T; }
static inline MPI_Datatype shim_MPI_UINT8_T(void) { return MPI_UINT8_T; }
static inline MPI_Datatype shim_MPI_BYTE(void) { return MPI_BYTE; }

/* Reduction operations */
static inline MPI_Op shim_MPI_SUM(void) { return MPI_SUM; }
static inline MPI_Op shim_MPI_MAX(void) { return MPI_MAX; }
static inline MPI_Op shim_MPI_MIN(void) { return MPI_MIN; }

/* Persistent allreduce (MPI 4.0 MPI_Allreduce_init; OpenMPI 4.1 has it as the MPIX_ pcollreq
   extension): the schedule and temporary buffers are set up once, MPI_Start reuses them, so a
   training step's reductions allocate nothing. Returns MPI_ERR_UNSUPPORTED_OPERATION where
   neither exists (the caller then falls back to MPI_Iallreduce). */
#if defined(OPEN_MPI) && OPEN_MPI
#include <mpi-ext.h>
#endif
static inline int shim_allreduce_init_in_place(void *buffer, int count, MPI_Datatype type, MPI_Op op,
                                               MPI_Comm comm, MPI_Request *request) {
#if MPI_VERSION >= 4
    return MPI_Allreduce_init(MPI_IN_PLACE, buffer, count, type, op, comm, MPI_INFO_NULL, request);
#elif defined(OMPI_HAVE_MPI_EXT_PCOLLREQ)
    return MPIX_Allreduce_init(MPI_IN_PLACE, buffer, count, type, op, comm, MPI_INFO_NULL, request);
#else
    (void)buffer; (void)count; (void)type; (void)op; (void)comm; (void)request;
    return MPI_ERR_UNSUPPORTED_OPERATION;
#endif
}

/* Integer constants (plain #defines import, but keep them next to the rest for clarity) */
static inline int shim_MPI_SUCCESS(void) { return MPI_SUCCESS; }
static inline int shim_MPI_UNDEFINED(void) { return MPI_UNDEFINED; }
static inline int shim_MPI_MAX_PROCESSOR_NAME(void) { return MPI_MAX_PROCESSOR_NAME; }
static inline int shim_MPI_MAX_ERROR_STRING(void) { return MPI_MAX_ERROR_STRING; }
static inline int shim_MPI_THREAD_FUNNELED(void) { return MPI_THREAD_FUNNELED; }
static inline int shim_MPI_THREAD_MULTIPLE(void) { return MPI_THREAD_MULTIPLE; }

#endif
