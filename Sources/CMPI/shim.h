#ifndef DISTRAINER_CMPI_H
#define DISTRAINER_CMPI_H
#include <mpi.h>
#endif
