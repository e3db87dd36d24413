#ifndef DISTRAINER_CMPI_H
#define DISTRAINER_CMPI_H
#include <mpi.h>

/* OpenMPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, …) are macros over the addresses of
   global structs, which Swift cannot import: these accessors return them. */
static inline MPI_Comm dt_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm dt_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype dt_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype dt_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype dt_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype dt_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype dt_uint8(void) { return MPI_UINT8_T; }
static inline MPI_Op dt_op_sum(void) { return MPI_SUM; }
static inline MPI_Op dt_op_max(void) { return MPI_MAX; }
static inline MPI_Op dt_op_min(void) { return MPI_MIN; }
static inline void *dt_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Errhandler dt_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Request dt_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *dt_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline int dt_undefined(void) { return MPI_UNDEFINED; }
static inline int dt_max_processor_name(void) { return MPI_MAX_PROCESSOR_NAME; }
static inline int dt_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int dt_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
static inline int dt_thread_multiple(void) { return MPI_THREAD_MULTIPLE; }
static inline int dt_success(void) { return MPI_SUCCESS; }
#endif
